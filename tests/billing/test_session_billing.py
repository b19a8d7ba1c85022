"""Balances against live sessions: 402 before work, and a session ended when the money runs out
(real Daphne, real Celery worker with Chromium, offline agent)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import requests

from accounts.models import Team
from billing.models import LedgerEntry
from billing.money import micros_to_usd, usd_text
from billing.selectors import meter_interval_micros, price_at, team_balance_micros
from sessions_app import metering
from sessions_app.metering import session_compute_ms
from sessions_app.models import BrowserSession
from sessions_app.services import session_end
from tests.conftest import Api, Proc, wait_for_workers
from tests.helpers import start, terminate, wait_until

from .helpers import set_balance


@pytest.fixture(autouse=True)
def _server_meter_interval(settings: Any) -> None:
    """The metering interval of the server and worker processes (TEST_ENV), so the interval
    costs computed here are theirs."""
    settings.ENIGMA_METER_INTERVAL_S = float(os.environ["ENIGMA_METER_INTERVAL_S"])


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
    required = micros_to_usd(meter_interval_micros())
    message = (
        f"Insufficient balance ($0.00 remaining, {usd_text(meter_interval_micros())} required: one "
        "metering interval for each live session of the team, this one included). Top up to continue."
    )
    assert response.json() == {
        "success": False,
        "message": message,
        "error": message,
        "code": "INSUFFICIENT_BALANCE",
        "details": {"balance": 0.0, "required": required},
        "balance": 0.0,
    }
    run = api.post("/start/run-task", {"taskDetails": "Open the page"})
    assert run.status_code == 402 and run.json()["balance"] == 0.0
    assert not BrowserSession.objects.filter(team=account["team"]).exists()


def test_start_needs_one_metering_interval_for_each_live_session(api: Api, account: dict[str, Any]) -> None:
    team = account["team"]
    interval = meter_interval_micros()  # 1 s of compute in the tests: 333 µ$
    # Two sessions of the team are live (waiting for a worker, so charged nothing meanwhile).
    waiting = [BrowserSession.objects.create(team=team) for _ in range(2)]
    set_balance(team, 2 * interval + interval // 2)
    refused = api.post("/start/start-session", {})
    assert refused.status_code == 402
    assert refused.json()["details"] == {
        "balance": micros_to_usd(2 * interval + interval // 2),
        "required": micros_to_usd(3 * interval),
    }
    assert BrowserSession.objects.filter(team=team).count() == 2
    session_end(session_id=waiting[0].pk, state="terminated", reason="terminated")
    started = api.post("/start/start-session", {})
    assert started.status_code == 200, started.text
    session_end(session_id=waiting[1].pk, state="terminated", reason="terminated")


def test_negative_balance_reports_it_in_the_402(api: Api, account: dict[str, Any]) -> None:
    set_balance(account["team"], -1_234_567)
    body = api.post("/start/start-session", {}).json()
    assert (body["code"], body["balance"], body["details"]["balance"]) == ("INSUFFICIENT_BALANCE", -1.234567, -1.234567)


def test_session_is_ended_when_the_balance_runs_out(
    api: Api, account: dict[str, Any], reconcile: Callable[[], Any]
) -> None:
    team = account["team"]
    interval = meter_interval_micros()
    balance = 2 * interval + interval // 2  # two and a half seconds of compute
    set_balance(team, balance)
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
    # Everything from the browser being ready to the end is charged, exactly, at the session's price.
    expected = price_at(session.created_at).cost_micros(
        input_tokens=session.input_tokens, output_tokens=session.output_tokens, compute_ms=session_compute_ms(session)
    )
    assert charged == session.cost_micros == expected
    assert session.started_at is not None and session.ended_at is not None
    assert session_compute_ms(session) == (session.ended_at - session.started_at) // timedelta(milliseconds=1)
    # Entries carry the milliseconds they charged; a tail worth under one micro-dollar
    # (3 ms at $0.02/minute) waits for the next charge, which here never comes.
    assert 0 <= session_compute_ms(session) - sum(e.compute_ms for e in charges) < 3
    # The session is stopped once the balance cannot cover its next interval: at most one
    # interval below zero.
    assert team_balance_micros(team=team) == balance - charged >= -interval
    result = reconcile()
    assert result.returncode == 0, result.stderr
    # No new work on a spent balance.
    assert api.post("/start/start-session", {}).status_code == 402


def test_eight_sessions_at_once_on_a_small_balance_overdraw_one_interval_at_most(
    api: Api, account: dict[str, Any]
) -> None:
    team = account["team"]
    Team.objects.filter(pk=team.pk).update(session_limit=8)
    interval = meter_interval_micros()
    balance = 3 * interval + interval // 2
    set_balance(team, balance)
    barrier = threading.Barrier(8)
    statuses: list[int] = []

    def post() -> None:
        barrier.wait()
        statuses.append(
            requests.post(
                f"{api.base}/start/start-session",
                json={},
                timeout=60,
                headers={"Authorization": f"Bearer {account['key']}"},
            ).status_code
        )

    threads = [threading.Thread(target=post) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    # Each session needs the balance to cover one interval for every live one: three fit.
    assert 1 <= statuses.count(200) <= 3 and statuses.count(402) == 8 - statuses.count(200), statuses
    ids = list(BrowserSession.objects.filter(team=team).values_list("pk", flat=True))
    for sid in ids:
        assert api.wait_session(sid, "terminated", timeout=60)["endReason"] == "balance_exhausted"
    for sid in ids:
        wait_for_final_charge(sid)
    assert team_balance_micros(team=team) >= -interval


@pytest.mark.slow
def test_a_session_orphaned_for_a_while_is_not_billed_for_that_time(
    api: Api, account: dict[str, Any], worker: Proc
) -> None:
    from sessions_app.sweep import sessions_sweep

    session_id = start(api)["sessionId"]
    api.wait_session(session_id, "active")
    time.sleep(1.5)
    worker.kill()  # the only worker: nobody hosts the session now
    try:
        # With no worker alive, the sweep runs from beat: run it as beat does until it
        # finds the session's heartbeat stale.
        wait_until(
            lambda: bool(sessions_sweep()) and BrowserSession.objects.filter(pk=session_id, state="orphaned").exists(),
            timeout=20,
        )
        time.sleep(4)  # orphaned for a while
    finally:
        worker.start()
        wait_for_workers(1)
    api.wait_session(session_id, "active", timeout=60)  # taken over by the restarted worker
    time.sleep(1)
    terminate(api, session_id)

    session = wait_for_final_charge(session_id)
    assert session.generation == 2 and session.started_at is not None and session.ended_at is not None
    billed_ms = sum(LedgerEntry.objects.filter(session_id=session_id).values_list("compute_ms", flat=True))
    life_ms = (session.ended_at - session.created_at) // timedelta(milliseconds=1)
    assert billed_ms <= life_ms - 4_000  # not the 4 s orphaned, nor the worker's restart
    assert billed_ms >= 2_500  # the 1.5 s before the loss and the 1 s after the takeover
    assert session.cost_micros == metering.session_cost_micros(session)
    # The session's usage shows the time billed.
    assert api.get(f"/sessions/{session_id}").json()["usage"]["computeTime"] == session_compute_ms(session) / 1000
