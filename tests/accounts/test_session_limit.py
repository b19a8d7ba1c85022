"""The per-team limit of live sessions (default 5), on every path that starts a session
(real Daphne, real Celery worker with Chromium, offline agent)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import requests
from django.test import Client, override_settings

from accounts.models import Team, User
from sessions_app.models import BrowserSession
from tests.conftest import Api
from tests.helpers import start, terminate


def _limit_body(current: int, limit: int) -> dict[str, Any]:
    message = f"Maximum concurrent sessions reached (limit: {limit})"
    return {
        "success": False,
        "message": message,
        "error": message,
        "code": "SESSION_LIMIT_REACHED",
        "details": {"current": current, "limit": limit},
    }


def test_a_sixth_live_session_is_429_until_one_ends(api: Api, account: dict[str, Any]) -> None:
    ids = [start(api)["sessionId"] for _ in range(5)]
    over = api.post("/start/start-session", {})
    assert over.status_code == 429
    assert over.json() == _limit_body(5, 5)
    run = api.post("/start/run-task", {"taskDetails": "extract the title"})
    assert run.status_code == 429 and run.json()["code"] == "SESSION_LIMIT_REACHED"
    chat = api.post(
        "/v1/chat/completions",
        {"model": "enigma-browser-1", "messages": [{"role": "user", "content": "extract the title"}]},
    )
    assert chat.status_code == 429 and chat.json()["error"]["code"] == "session_limit_reached"
    assert BrowserSession.objects.filter(team=account["team"]).count() == 5

    # Ending a session frees its slot at once.
    terminate(api, ids[0])
    assert api.post("/start/start-session", {}).status_code == 200


def test_eight_starts_at_once_with_a_limit_of_5_start_exactly_5(api: Api, account: dict[str, Any]) -> None:
    barrier = threading.Barrier(8)
    statuses: list[int] = []

    def post() -> None:
        client = requests.Session()
        barrier.wait()
        response = client.post(
            f"{api.base}/start/start-session",
            json={},
            timeout=60,
            headers={"Authorization": f"Bearer {account['key']}"},
        )
        statuses.append(response.status_code)

    threads = [threading.Thread(target=post) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    assert sorted(statuses) == [200] * 5 + [429] * 3
    assert BrowserSession.objects.filter(team=account["team"]).count() == 5


def test_a_team_limit_set_in_admin_wins_over_the_default(api: Api, account: dict[str, Any]) -> None:
    staff = Client()
    staff.force_login(User.objects.create_superuser(email="ops@example.com", password="pw-123456789"))
    team = account["team"]
    form = staff.get(f"/admin/accounts/team/{team.pk}/change/")
    assert form.status_code == 200 and b'name="session_limit"' in form.content
    saved = staff.post(
        f"/admin/accounts/team/{team.pk}/change/",
        {
            "name": team.name,
            "is_active": "on",
            "session_limit": "2",
            "memberships-TOTAL_FORMS": "0",
            "memberships-INITIAL_FORMS": "0",
        },
    )
    assert saved.status_code == 302, saved.content[:2000]
    team.refresh_from_db()
    assert team.session_limit == 2

    start(api)
    start(api)
    over = api.post("/start/start-session", {})
    assert over.status_code == 429 and over.json() == _limit_body(2, 2)


@pytest.mark.parametrize(("own", "default", "expected"), [(None, 5, 5), (None, 12, 12), (3, 12, 3), (0, 5, 0)])
def test_the_team_value_else_ENIGMA_TEAM_SESSION_LIMIT(db: Any, own: int | None, default: int, expected: int) -> None:
    team = Team.objects.create(name="t", session_limit=own)
    with override_settings(ENIGMA_TEAM_SESSION_LIMIT=default):
        assert team.live_session_limit == expected
