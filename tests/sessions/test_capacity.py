"""Capacity as a client sees it: a slot is free for the next start as soon as its session has
ended, not once the worker has finished closing its browser (a CDP session's own Chromium takes
a while to close)."""

from __future__ import annotations

import os
from typing import Any

import pytest

from sessions_app.models import BrowserSession
from tests.conftest import Api
from tests.helpers import start, terminate


@pytest.mark.slow
def test_a_start_right_after_a_terminate_takes_the_freed_slot(api: Api, pages: str, account: dict[str, Any]) -> None:
    team = account["team"]
    team.session_limit = 50  # the worker's capacity is the limit here, not the team's
    team.save(update_fields=["session_limit"])
    capacity = int(os.environ["ENIGMA_WORKER_CAPACITY"])
    live = BrowserSession.objects.filter(state__in=BrowserSession.LIVE_STATES).count()
    ids = [start(api, startingUrl=f"{pages}/hello.html", cdp=True)["sessionId"] for _ in range(capacity - live)]
    try:
        for sid in ids:
            api.wait_session(sid, "active")
        full = api.post("/start/start-session", {})
        assert full.status_code == 503, full.text  # the worker is full
        for _ in range(3):
            terminate(api, ids.pop(0))  # answered once the session is terminated
            response = api.post("/start/start-session", {"startingUrl": f"{pages}/hello.html", "cdp": True})
            assert response.status_code == 200, response.text
            ids.append(response.json()["sessionId"])
            api.wait_session(ids[-1], "active")
    finally:
        for sid in ids:
            api.message(sid, {"actionType": "state", "newState": "terminate"})
        for sid in ids:
            api.wait_session(sid, "terminated")
