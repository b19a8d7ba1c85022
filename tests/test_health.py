from __future__ import annotations

from typing import Any

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from enigma_site.redis import get_redis


@pytest.mark.django_db
def test_health_names_redis_when_it_is_down() -> None:
    get_redis.cache_clear()
    try:
        with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
            response = APIClient().get("/start/health")
    finally:
        get_redis.cache_clear()
    assert response.status_code == 503
    body = response.json()
    assert body["success"] is False
    assert "redis" in body["details"]["down"]
    assert body["message"] == "Unavailable: redis"


def test_health_is_healthy_with_a_live_worker(worker: Any, server: str) -> None:
    import requests

    body = requests.get(server + "/start/health", timeout=10).json()
    assert body["status"] == "healthy"
    assert body["instancesAvailable"] is True
    assert body["workers"] >= 1
    assert body["instanceCount"] >= 1


@pytest.mark.django_db
def test_metrics_need_the_metrics_token_or_a_staff_login() -> None:
    from django.test import Client

    from accounts.services import personal_team, user_create
    from sessions_app.models import BrowserSession

    user = user_create(email="m@example.com", password="pw-123456789")
    BrowserSession.objects.create(team=personal_team(user), state="terminated")
    assert APIClient().get("/metrics").status_code == 401  # closed by default
    with override_settings(ENIGMA_METRICS_TOKEN="t0ken"):
        assert APIClient().get("/metrics").status_code == 401
        assert APIClient().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
        text = APIClient().get("/metrics", HTTP_AUTHORIZATION="Bearer t0ken").content.decode()
    assert 'enigma_sessions{state="terminated"} 1' in text
    assert 'enigma_sessions{state="active"} 0' in text
    browser = Client()
    browser.force_login(user)
    assert browser.get("/metrics").status_code == 401  # a customer is not an operator
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    assert browser.get("/metrics").status_code == 200


@pytest.mark.django_db
def test_openapi_document_lists_every_api_route() -> None:
    from enigma_site.openapi import api_paths

    doc = APIClient().get("/openapi.json").json()
    assert doc["openapi"] == "3.1.0"
    for path, methods, _summary in api_paths():
        operations = doc["paths"][f"/{path}"]
        assert set(operations) == set(methods) and methods, path
        assert all(op["summary"] for op in operations.values()), path
    for required in (
        "/start/start-session",
        "/start/run-task",
        "/start/send-message",
        "/task/{session_id}/{task_id}",
        "/v1/chat/completions",
        "/environments",
        "/cron-jobs",
        "/policies",
        "/account/usage",
    ):
        assert required in doc["paths"]
    assert doc["paths"]["/start/health"]["get"]["security"] == []
