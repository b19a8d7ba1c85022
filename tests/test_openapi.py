"""/openapi.json: a valid OpenAPI 3.1 document whose request and response schemas are the
serializers the endpoints use, so what it says is what the API does."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from django.utils import timezone
from drf_spectacular.drainage import GENERATOR_STATS
from openapi_spec_validator import validate
from rest_framework.test import APIClient

from accounts.services import api_key_create, personal_team, user_create
from billing.services import ledger_post
from enigma_site.openapi import openapi_document
from sessions_app.models import BrowserSession, Task


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return APIClient().get("/openapi.json").json()


def _schema(document: dict[str, Any], path: str, method: str, status: str = "200") -> dict[str, Any]:
    op = document["paths"][path][method]
    schema = op["responses"][status]["content"]["application/json"]["schema"]
    return {**schema, "components": document["components"]}


def _body_schema(document: dict[str, Any], path: str) -> dict[str, Any]:
    ref = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    return document["components"]["schemas"][ref.rsplit("/", 1)[-1]]


def test_the_document_is_valid_openapi_3(document: dict[str, Any]) -> None:
    validate(document)
    assert document["openapi"].startswith("3.")


def test_start_session_body_lists_its_fields_with_their_limits(document: dict[str, Any]) -> None:
    body = _body_schema(document, "/start/start-session")
    fields = body["properties"]
    for name in (
        "taskDetails",
        "prompt",
        "startingUrl",
        "startingPoint",
        "task",
        "initialTask",
        "environmentId",
        "profileId",
        "policyId",
        "proxy",
        "reachOutMode",
        "avoidDomains",
        "secrets",
        "webhook",
        "cdp",
    ):
        assert name in fields, name
    assert (fields["maxDuration"]["minimum"], fields["maxDuration"]["maximum"]) == (1000, 300_000)
    task = document["components"]["schemas"]["Task"]["properties"]
    assert "prompt" in task and task["maxOutputTokens"]["maximum"] == 100_000


def test_generating_the_document_warns_of_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    """Every DRF view is described by its serializers: drf-spectacular has nothing to guess."""
    GENERATOR_STATS.reset()
    openapi_document.__wrapped__()
    assert not GENERATOR_STATS, (dict(GENERATOR_STATS._warn_cache), dict(GENERATOR_STATS._error_cache))
    assert "Warning" not in capsys.readouterr().err


def test_every_operation_has_a_described_json_response(document: dict[str, Any]) -> None:
    for path, item in document["paths"].items():
        for method, op in item.items():
            if path.startswith(("/v1/", "/whep/")) or path in ("/metrics", "/billing/stripe/webhook", "/openapi.json"):
                continue  # plain Django views (OpenAI's format, WebRTC's SDP, Prometheus, Stripe's)
            ok = [status for status in op["responses"] if status.startswith("2")]
            assert ok, (method, path)
            content = op["responses"][ok[0]].get("content", {})
            assert content, (method, path)
            schema = content.get("application/json", {}).get("schema")
            if schema is not None:
                assert schema != {"type": "object"}, (method, path)


def test_no_endpoint_of_sessions_or_billing_has_a_bare_object_body(document: dict[str, Any]) -> None:
    for path, item in document["paths"].items():
        for method, op in item.items():
            content = op.get("requestBody", {}).get("content", {}).get("application/json")
            if content and not path.startswith("/v1/"):
                assert content["schema"] != {"type": "object"}, (method, path)
    chat = document["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert chat["properties"]["model"]["enum"] == ["enigma-browser-1"]
    message = document["components"]["schemas"]["Message"]
    assert message["discriminator"]["propertyName"] == "actionType"


@pytest.mark.django_db
def test_real_responses_match_their_documented_schemas(document: dict[str, Any]) -> None:
    user = user_create(email="doc@example.com")
    team = personal_team(user)
    ledger_post(team=team, amount_micros=1_000_000, kind="grant", idempotency_key="doc-grant")
    client = APIClient(HTTP_AUTHORIZATION=f"Bearer {api_key_create(team=team, user=user).raw}")
    session = BrowserSession.objects.create(team=team, state="active", worker_id="w", started_at=timezone.now())
    Task.objects.create(
        session=session,
        seq=1,
        prompt="x",
        state="completed",
        started_at=timezone.now(),
        completed_at=timezone.now(),
        result_message="done",
    )
    Task.objects.create(session=session, seq=2, prompt="y", state="running", started_at=timezone.now())
    task_ids = list(session.tasks.order_by("seq").values_list("pk", flat=True))

    checks = [
        ("/sessions", "/sessions"),
        (f"/sessions/{session.pk}", "/sessions/{session_id}"),
        (f"/sessions/{session.pk}/events", "/sessions/{session_id}/events"),
        (f"/task/{session.pk}/{task_ids[0]}", "/task/{session_id}/{task_id}"),
        (f"/task/{session.pk}/{task_ids[1]}", "/task/{session_id}/{task_id}"),
        ("/account", "/account"),
        ("/account/usage?group=session", "/account/usage"),
    ]
    for url, path in checks:
        response = client.get(url)
        assert response.status_code == 200, (url, response.json())
        jsonschema.validate(response.json(), _schema(document, path, "get"))
    listed = client.get("/sessions").json()["pagination"]
    assert listed == {"page": 1, "limit": 20, "total": 1, "totalPages": 1, "pages": 1}
