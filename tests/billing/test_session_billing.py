"""Balances against live sessions: 402 before work, and a session ended when the money runs out
(real Daphne, real Celery worker with Chromium, offline agent)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from billing.models import LedgerEntry
from billing.selectors import price_at, team_balance_micros
from sessions_app import metering
from sessions_app.metering import session_compute_ms
from sessions_app.models import BrowserSession
from tests.conftest import Api

from .helpers import set_balance


def wait_for_final_charge(session_id: str, timeout: float = 10) -> BrowserSession:
    """The session once its cost covers its whole life, or as it is after `timeout`."""
    deadline = time.time() + timeout
    while True:
        session = BrowserSession.objects.get(pk=session_id)
        if session.cost_micros >= metering.session_cost_micros(session) or time.time() > deadline:
            return session
        time.sleep(0.1)


def test_start_session_with_no_balance_is_402_before_any_work(api: Api, account: dict[str, Any]) -> None:
    set_balance(account["team"], 0)
    response = api.post("/start/start-session", {"taskDetails": "Open the page"})
    assert response.status_code == 402
    message = "Insufficient balance ($0.00 remaining). Top up to continue."
    assert response.json() == {"success": False, "message": message, "error": message,
                               "code": "INSUFFICIENT_BALANCE", "details": {"balance": 0.0},
                               "balance": 0.0}
    run = api.post("/start/run-task", {"taskDetails": "Open the page"})
    assert run.status_code == 402 and run.json()["balance"] == 0.0
    assert not BrowserSession.objects.filter(team=account["team"]).exists()


def test_negative_balance_reports_it_in_the_402(api: Api, account: dict[str, Any]) -> None:
    set_balance(account["team"], -1_234_567)
    body = api.post("/start/start-session", {}).json()
    assert (body["code"], body["balance"], body["details"]["balance"]) == (
        "INSUFFICIENT_BALANCE", -1.234567, -1.234567)


def test_session_is_ended_when_the_balance_runs_out(api: Api, account: dict[str, Any],
                                                    reconcile: Callable[[], Any]) -> None:
    team = account["team"]
    set_balance(team, 300)  # under a second of compute at $0.02/minute
    started = api.post("/start/start-session", {})
    assert started.status_code == 200, started.text
    session_id = started.json()["sessionId"]

    body = api.wait_session(session_id, "terminated", timeout=60)
    assert body["endReason"] == "balance_exhausted"

    # The runner ends the session, then meters its last milliseconds.
    session = wait_for_final_charge(session_id)
    charges = list(LedgerEntry.objects.filter(session_id=session_id).order_by("id"))
    assert charges and all(e.kind == "usage" and e.amount_micros < 0 for e in charges)
    assert all(e.api_key_id == account["api_key"].pk for e in charges)
    charged = -sum(e.amount_micros for e in charges)
    # Everything from creation to the end is charged, exactly, at the session's price.
    expected = price_at(session.created_at).cost_micros(
        input_tokens=session.input_tokens, output_tokens=session.output_tokens,
        compute_ms=session_compute_ms(session))
    assert charged == session.cost_micros == expected
    # Entries carry the milliseconds they charged; a tail worth under one micro-dollar
    # (3 ms at $0.02/minute) waits for the next charge, which here never comes.
    assert 0 <= session_compute_ms(session) - sum(e.compute_ms for e in charges) < 3
    assert team_balance_micros(team=team) == 300 - charged < 0
    # Overdraft: at most one metering interval (plus the browser's start-up, metered at the
    # first tick, and the few milliseconds between the last tick and the end).
    assert session.started_at is not None
    startup_ms = (session.started_at - session.created_at) // timedelta(milliseconds=1)
    interval_ms = int(float(os.environ["ENIGMA_METER_INTERVAL_S"]) * 1000)
    bound = price_at(session.created_at).compute_cost_micros(
        compute_ms=startup_ms + interval_ms + 500)
    assert charged - 300 <= bound
    result = reconcile()
    assert result.returncode == 0, result.stderr
    # No new work on a spent balance.
    assert api.post("/start/start-session", {}).status_code == 402
