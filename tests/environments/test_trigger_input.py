"""A trigger body answers 400 naming the field for any JSON value of it, never a 500."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from accounts.services import api_key_create, personal_team, user_create


@pytest.mark.django_db
@pytest.mark.parametrize("value", [5, True, ["https://a.com"], {"url": "https://a.com"}])
def test_a_starting_url_that_is_no_string_is_a_400_naming_it(value: object) -> None:
    user = user_create(email="trigger-input@example.com")
    team = personal_team(user)
    client = APIClient(HTTP_AUTHORIZATION=f"Bearer {api_key_create(team=team, user=user).raw}")
    environment = client.post("/environments", {"name": "e"}, format="json").json()["environment"]["_id"]
    body = {
        "name": "n",
        "prompt": "extract the title",
        "environmentId": environment,
        "scheduleType": "every",
        "scheduleInterval": "1h",
        "webhook": {"url": "https://example.com/hook"},
        "startingUrl": value,
    }
    response = client.post("/cron-jobs", body, format="json")
    assert response.status_code == 400, response.content[:300]
    assert response.json()["details"]["parameter"] == "startingUrl"
    assert response.json()["message"] == "Invalid parameter 'startingUrl': must be a string"
