"""The task and session lifecycle driven directly, without a worker: every change happens once,
writes its event once, and a settled task stays settled."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import time_machine
from django.utils import timezone

from billing.models import LedgerEntry
from billing.selectors import team_balance_micros
from sessions_app import lifecycle
from sessions_app.config import SessionConfig, TaskConfig
from sessions_app.metering import session_cost_micros
from sessions_app.models import BrowserSession, SessionEvent, Task
from sessions_app.services import session_end

T0 = datetime(2026, 3, 10, 12, 0, 0, tzinfo=UTC)


def _active_session(account: dict[str, Any]) -> BrowserSession:
    return BrowserSession.objects.create(
        team=account["team"],
        api_key=account["api_key"],
        state=BrowserSession.State.ACTIVE,
        generation=1,
        started_at=timezone.now(),
    )


def _task(session: BrowserSession, seq: int = 1) -> Task:
    return Task.objects.create(session=session, seq=seq, prompt="extract the title", config={})


def _events(session: BrowserSession, kind: str, task: Task | None = None) -> int:
    events = SessionEvent.objects.filter(session=session, type=kind)
    return events.filter(task_id=task.pk).count() if task is not None else events.count()


def test_a_task_starts_and_finishes_once(account: dict[str, Any]) -> None:
    session = _active_session(account)
    task = _task(session)
    assert lifecycle.task_start(session_id=session.pk, task_id=task.pk)
    assert not lifecycle.task_start(session_id=session.pk, task_id=task.pk)
    assert lifecycle.task_finish(
        session_id=session.pk, task_id=task.pk, state=Task.State.COMPLETED, result_message="Hello"
    )
    assert not lifecycle.task_finish(
        session_id=session.pk, task_id=task.pk, state=Task.State.FAILED, error="late", code="LATE"
    )
    assert not lifecycle.task_fail_crashed(session_id=session.pk, task_id=task.pk)
    task.refresh_from_db()
    assert (task.state, task.result_message, task.code) == (Task.State.COMPLETED, "Hello", "")
    assert _events(session, "task_started", task) == 1
    assert _events(session, "task_completed", task) == 1
    assert _events(session, "error", task) == 0


def test_a_task_cancelled_with_its_session_cannot_be_finished(account: dict[str, Any]) -> None:
    session = _active_session(account)
    running, queued = _task(session, 1), _task(session, 2)
    assert lifecycle.task_start(session_id=session.pk, task_id=running.pk)
    assert session_end(session_id=session.pk, state=BrowserSession.State.TERMINATED, reason="terminated")
    assert not session_end(session_id=session.pk, state=BrowserSession.State.FAILED, reason="error")
    assert not lifecycle.task_finish(
        session_id=session.pk, task_id=running.pk, state=Task.State.COMPLETED, result_message="too late"
    )
    assert not lifecycle.task_start(session_id=session.pk, task_id=queued.pk)
    for task in (running, queued):
        task.refresh_from_db()
        assert (task.state, task.code, task.result_message) == (Task.State.TERMINATED, "SESSION_ENDED", "")
    session.refresh_from_db()
    assert (session.state, session.end_reason) == (BrowserSession.State.TERMINATED, "terminated")
    assert _events(session, "end_session") == 1
    assert _events(session, "task_completed") == 0


def test_ending_a_session_posts_its_final_charge_once(account: dict[str, Any]) -> None:
    with time_machine.travel(T0, tick=False) as clock:
        session = _active_session(account)
        clock.move_to(T0 + timedelta(seconds=9))
        assert session_end(session_id=session.pk, state=BrowserSession.State.TERMINATED, reason="terminated")
        clock.move_to(T0 + timedelta(seconds=30))
        assert not session_end(session_id=session.pk, state=BrowserSession.State.TERMINATED, reason="terminated")
    session.refresh_from_db()
    charged = -sum(e.amount_micros for e in LedgerEntry.objects.filter(session_id=session.pk))
    assert charged == session.cost_micros == session_cost_micros(session) == 3_000  # 9 s at $0.02 a minute
    assert team_balance_micros(team=account["team"]) == 10_000_000 - 3_000


def test_an_orphaned_sessions_running_task_fails_once_and_queued_ones_wait(account: dict[str, Any]) -> None:
    session = _active_session(account)
    running, queued = _task(session, 1), _task(session, 2)
    assert lifecycle.task_start(session_id=session.pk, task_id=running.pk)
    assert lifecycle.session_orphan(session=session, now=timezone.now())
    assert not lifecycle.session_orphan(session=session, now=timezone.now())  # the row moved on
    running.refresh_from_db()
    queued.refresh_from_db()
    assert (running.state, running.code) == (Task.State.FAILED, "INSTANCE_LOST")
    assert queued.state == Task.State.QUEUED
    assert _events(session, "error", running) == 1
    assert _events(session, "instance:disconnected") == 1
    session.refresh_from_db()
    assert session.state == BrowserSession.State.ORPHANED
    # A worker's claim and activation bring it back; a stale generation cannot.
    generation = lifecycle.session_claim(session_id=session.pk, worker_id="w:1")
    assert generation == 2
    assert not lifecycle.session_activate(
        session_id=session.pk, generation=1, started_at=session.started_at, takeover=True, page={}
    )
    assert lifecycle.session_activate(
        session_id=session.pk,
        generation=2,
        started_at=session.started_at,
        takeover=True,
        page={"current_url": "https://example.com/"},
    )
    session.refresh_from_db()
    assert (session.state, session.orphaned_at, session.current_url) == (
        BrowserSession.State.ACTIVE,
        None,
        "https://example.com/",
    )
    assert _events(session, "instance:reconnected") == 1


def test_a_guardrail_is_raised_and_answered_once(account: dict[str, Any]) -> None:
    session = _active_session(account)
    task = _task(session)
    assert not lifecycle.task_guardrail_raise(session_id=session.pk, task_id=task.pk, question="Proceed?")
    assert lifecycle.task_start(session_id=session.pk, task_id=task.pk)
    assert lifecycle.task_guardrail_raise(session_id=session.pk, task_id=task.pk, question="Proceed?")
    assert Task.objects.get(pk=task.pk).state == Task.State.GUARDRAIL
    assert lifecycle.task_guardrail_answered(session_id=session.pk, task_id=task.pk)
    assert not lifecycle.task_guardrail_answered(session_id=session.pk, task_id=task.pk)
    task.refresh_from_db()
    assert (task.state, task.guardrail_question) == (Task.State.RUNNING, "")
    assert _events(session, "guardrail_trigger", task) == 1


def test_configs_stored_by_earlier_versions_load_with_the_old_defaults() -> None:
    task = TaskConfig.from_json({})
    assert (task.max_duration_ms, task.max_input_tokens, task.max_output_tokens, task.output_type) == (
        300_000,
        100_000,
        100_000,
        "text",
    )
    assert (task.files, task.avoid_domains, task.terminate_on_completion) == ([], [], False)
    session = SessionConfig.from_json({"avoidDomains": ["example.com"]})
    assert (session.avoid_domains, session.max_duration_ms, session.recording, session.cdp) == (
        ["example.com"],
        None,
        True,
        False,
    )
    stored = {
        "mode": "default",
        "reachOutMode": "guardrail_only",
        "maxDuration": 60_000,
        "maxInputTokens": 5,
        "maxOutputTokens": 6,
        "avoidDomains": [],
        "startingUrl": "https://example.com",
        "terminateOnCompletion": True,
        "initialPrompt": "go",
        "environmentId": "env1",
        "proxy": None,
        "policyId": None,
        "recording": False,
        "cdp": True,
    }
    assert SessionConfig.from_json(stored).to_json() == stored
