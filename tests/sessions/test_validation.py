"""Every validation error: 400 with its code and the parameter that was wrong."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from accounts.services import api_key_create, personal_team, user_create
from billing.services import ledger_post
from enigma_site.redis import get_redis
from sessions_app.models import BrowserSession

pytestmark = pytest.mark.django_db


@pytest.fixture
def client() -> APIClient:
    for key in get_redis().scan_iter("enigma:rl:*"):
        get_redis().delete(key)
    user = user_create(email="v@example.com")
    team = personal_team(user)
    ledger_post(team=team, amount_micros=1_000_000, kind="grant", idempotency_key="v-grant")
    return APIClient(HTTP_AUTHORIZATION=f"Bearer {api_key_create(team=team, user=user).raw}")


START_CASES: list[tuple[dict[str, Any], str, str]] = [
    ({"maxDuration": 500}, "INVALID_PARAMETER", "maxDuration"),
    ({"maxDuration": 300001}, "INVALID_PARAMETER", "maxDuration"),
    ({"maxDuration": "fast"}, "INVALID_PARAMETER", "maxDuration"),
    ({"maxInputTokens": -1}, "INVALID_PARAMETER", "maxInputTokens"),
    ({"maxOutputTokens": 100001}, "INVALID_PARAMETER", "maxOutputTokens"),
    ({"startingUrl": "ftp://example.com"}, "INVALID_PARAMETER", "startingUrl"),
    ({"avoidDomains": "facebook.com"}, "INVALID_PARAMETER", "avoidDomains"),
    ({"avoidDomains": ["not a domain!"]}, "INVALID_PARAMETER", "avoidDomains[0]"),
    ({"mode": "turbo"}, "INVALID_PARAMETER", "mode"),
    ({"terminateOnCompletion": "yes"}, "INVALID_PARAMETER", "terminateOnCompletion"),
    ({"taskDetalis": "typo"}, "INVALID_PARAMETER", "taskDetalis"),
    ({"initialTask": {"maxDuration": 10}}, "INVALID_PARAMETER", "initialTask.maxDuration"),
    ({"initialTask": {"startingUrl2": "x"}}, "INVALID_PARAMETER", "initialTask.startingUrl2"),
    ({"task": {"prompt": 5}}, "INVALID_PARAMETER", "task.prompt"),
    ({"task": {}, "taskDetails": "x"}, "INVALID_PARAMETER", "taskDetails"),
    ({"reachOutMode": "loud"}, "INVALID_PARAMETER", "reachOutMode"),
    ({"outputType": "structured_json"}, "INVALID_PARAMETER", "outputSchema"),
    ({"outputType": "structured_csv", "outputSchema": []}, "INVALID_PARAMETER", "outputSchema"),
    ({"outputType": "xml"}, "INVALID_PARAMETER", "outputType"),
    ({"secrets": [{"match": "a.com"}]}, "INVALID_PARAMETER", "secrets[0].fields"),
    ({"environmentId": "abc"}, "INVALID_PARAMETER", "environmentId"),
]


@pytest.mark.parametrize(("body", "code", "parameter"), START_CASES)
def test_start_session_validation(client: APIClient, body: dict[str, Any], code: str, parameter: str) -> None:
    response = client.post("/start/start-session", body, format="json")
    assert response.status_code == 400, response.json()
    data = response.json()
    assert data["success"] is False and data["code"] == code
    assert data["details"]["parameter"] == parameter
    assert data["message"] == data["error"]
    assert not BrowserSession.objects.exists()


def test_reach_out_mode_message_is_the_documented_one(client: APIClient) -> None:
    response = client.post("/start/start-session", {"reachOutMode": "loud"}, format="json")
    assert response.json()["message"] == "reachOutMode must be one of: off, guardrail_only, full"


@pytest.mark.parametrize(
    ("body", "code", "parameter"),
    [
        ({}, "MISSING_REQUIRED_FIELD", "taskDetails"),
        ({"task": {"startingUrl": "https://a.com"}}, "MISSING_REQUIRED_FIELD", "task.prompt"),
        ({"taskDetails": "   "}, "INVALID_TASK_DETAILS", "taskDetails"),
        ({"prompt": ""}, "INVALID_TASK_DETAILS", "prompt"),
    ],
)
def test_run_task_requires_a_task(client: APIClient, body: dict[str, Any], code: str, parameter: str) -> None:
    response = client.post("/start/run-task", body, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == code
    assert response.json()["details"]["parameter"] == parameter


def test_run_task_missing_field_message(client: APIClient) -> None:
    assert client.post("/start/run-task", {}, format="json").json()["message"] == "Missing required field: taskDetails"


@pytest.fixture
def session_id(client: APIClient) -> str:
    from accounts.models import ApiKey

    team = ApiKey.objects.get().team  # the client's team
    return BrowserSession.objects.create(team=team, state="active", worker_id="w").pk


MESSAGE_CASES: list[tuple[Any, str, str]] = [
    ({"actionType": "dance"}, "INVALID_PARAMETER", "message.actionType"),
    ({}, "MISSING_REQUIRED_FIELD", "message.actionType"),
    ({"actionType": "newTask"}, "MISSING_REQUIRED_FIELD", "message.taskDetails"),
    ({"actionType": "newTask", "taskDetails": ""}, "INVALID_TASK_DETAILS", "message.taskDetails"),
    ({"actionType": "newTask", "newState": "pause", "taskDetails": "x"}, "INVALID_PARAMETER", "message.newState"),
    ({"actionType": "state", "newState": "explode"}, "INVALID_PARAMETER", "message.newState"),
    ({"actionType": "state"}, "MISSING_REQUIRED_FIELD", "message.newState"),
    (
        {"actionType": "interaction", "action": {"type": "CLICK", "x": 10, "y": 100}},
        "INVALID_PARAMETER",
        "message.action.y",
    ),
    (
        {"actionType": "interaction", "action": {"type": "CLICK", "x": 10, "y": 601}},
        "INVALID_PARAMETER",
        "message.action.y",
    ),
    (
        {"actionType": "interaction", "action": {"type": "CLICK", "x": 1025, "y": 300}},
        "INVALID_PARAMETER",
        "message.action.x",
    ),
    (
        {"actionType": "interaction", "action": {"type": "CLICK", "y": 300}},
        "MISSING_REQUIRED_FIELD",
        "message.action.x",
    ),
    ({"actionType": "interaction", "action": {"type": "TYPE"}}, "MISSING_REQUIRED_FIELD", "message.action.text"),
    (
        {"actionType": "interaction", "action": {"type": "KEY_PRESS", "key": "Hyper"}},
        "INVALID_PARAMETER",
        "message.action.key",
    ),
    ({"actionType": "interaction", "action": {"type": "SWIPE"}}, "INVALID_PARAMETER", "message.action.type"),
    ({"actionType": "guardrail", "newState": "resume"}, "MISSING_REQUIRED_FIELD", "message.taskDetails"),
    ({"actionType": "guardrail", "newState": "later", "taskDetails": "x"}, "INVALID_PARAMETER", "message.newState"),
    ("pause", "INVALID_PARAMETER", "message"),
]


@pytest.mark.parametrize(("message", "code", "parameter"), MESSAGE_CASES)
def test_send_message_validation(client: APIClient, session_id: str, message: Any, code: str, parameter: str) -> None:
    response = client.post("/start/send-message", {"sessionId": session_id, "message": message}, format="json")
    assert response.status_code == 400, response.json()
    assert response.json()["code"] == code
    assert response.json()["details"]["parameter"] == parameter


def test_send_message_requires_session_and_message(client: APIClient) -> None:
    response = client.post("/start/send-message", {"message": {"actionType": "state"}}, format="json")
    assert response.status_code == 400
    assert response.json()["message"] == "sessionId and message are required"
    assert response.json()["code"] == "MISSING_REQUIRED_FIELD"


def test_unknown_session_is_404(client: APIClient) -> None:
    response = client.post(
        "/start/send-message",
        {"sessionId": "nope", "message": {"actionType": "state", "newState": "pause"}},
        format="json",
    )
    assert response.status_code == 404 and response.json()["code"] == "SESSION_NOT_FOUND"


def test_guardrail_answer_without_pending_guardrail_is_409(client: APIClient, session_id: str) -> None:
    response = client.post(
        "/start/send-message",
        {"sessionId": session_id, "message": {"actionType": "guardrail", "taskDetails": "yes", "newState": "resume"}},
        format="json",
    )
    assert response.status_code == 409 and response.json()["code"] == "NO_GUARDRAIL_PENDING"


def test_zero_balance_gets_402_with_balance_before_any_work() -> None:
    user = user_create(email="broke@example.com")
    key = api_key_create(team=personal_team(user), user=user).raw
    response = APIClient(HTTP_AUTHORIZATION=f"Bearer {key}").post(
        "/start/run-task", {"taskDetails": "x"}, format="json"
    )
    assert response.status_code == 402
    body = response.json()
    assert body["code"] == "INSUFFICIENT_BALANCE" and body["balance"] == 0.0
    assert not BrowserSession.objects.exists()
