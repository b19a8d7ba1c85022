"""Reads of sessions and tasks, always scoped to a team, and their response shapes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from accounts.models import Team
from billing.models import Price
from billing.money import micros_to_usd
from billing.selectors import price_at
from enigma_site.api import timestamp
from enigma_site.errors import ApiError

from .cdp import cdp_status
from .metering import session_compute_ms
from .models import BrowserSession, Task


class SessionNotFound(ApiError):
    status_code = 404
    code = "SESSION_NOT_FOUND"


class TaskNotFound(ApiError):
    status_code = 404
    code = "TASK_NOT_FOUND"


def session_get(*, team: Team | int, session_id: str) -> BrowserSession:
    """Return the team's session, or raise SessionNotFound (also for another team's id)."""
    team_id = team if isinstance(team, int) else team.pk
    try:  # get(), not first(): a lookup by primary key needs no ORDER BY (a poll's hot path)
        return BrowserSession.objects.get(pk=str(session_id)[:64], team_id=team_id)
    except BrowserSession.DoesNotExist:
        raise SessionNotFound(f"Session {session_id} does not exist or has expired") from None


def task_get(*, team: Team | int, session_id: str, task_id: str) -> Task:
    session = session_get(team=team, session_id=session_id)
    task = Task.objects.filter(pk=str(task_id)[:64], session=session).select_related("session").first()
    if task is None:
        raise TaskNotFound(f"Task {task_id} not found in session {session_id}")
    return task


# A session that ended this recently still holds its environment until its state is saved.
_SAVE_GRACE_S = 30


def session_holds_environment(session_id: str) -> bool:
    """Whether the session holding an environment still needs it: it is live, or it has just
    ended and session_end has not saved its state yet (environments asks, see SessionsConfig)."""
    row = BrowserSession.objects.filter(pk=session_id).values("state", "ended_at").first()
    if row is None:
        return False
    if row["state"] in BrowserSession.LIVE_STATES:
        return True
    ended_at = row["ended_at"]
    return ended_at is not None and ended_at > timezone.now() - timedelta(seconds=_SAVE_GRACE_S)


def session_list(*, team: Team | int, state: str | None = None) -> QuerySet[BrowserSession]:
    team_id = team if isinstance(team, int) else team.pk
    query = BrowserSession.objects.filter(team_id=team_id).order_by("-created_at")
    if state:
        query = query.filter(state=state)
    return query


def _seconds(start: Any, end: Any) -> float:
    if start is None:
        return 0.0
    return round(((end or timezone.now()) - start).total_seconds(), 3)


def usage_object(*, input_tokens: int, output_tokens: int, seconds: float, cost_micros: int) -> dict[str, Any]:
    """Both key sets of spec README §5."""
    cost = micros_to_usd(cost_micros)
    return {
        "inputTokens": input_tokens,
        "outputTokens": output_tokens,
        "computeTime": seconds,
        "cost": cost,
        "prompt_tokens": input_tokens,
        "completion_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
        "completion_time": seconds,
    }


def task_cost_micros(task: Task, price: Price | None = None) -> int:
    """Token cost of the task plus compute for its own running time (for display), at the
    price of its session (pass `price` when showing many tasks of one session)."""
    price = price or price_at(task.session.created_at)
    tokens = (
        task.input_tokens * price.input_per_million_micros + task.output_tokens * price.output_per_million_micros
    ) // 1_000_000
    ms = int(_seconds(task.started_at, task.completed_at) * 1000)
    return tokens + ms * price.compute_per_minute_micros // 60_000


def task_usage(task: Task, price: Price | None = None) -> dict[str, Any]:
    return usage_object(
        input_tokens=task.input_tokens,
        output_tokens=task.output_tokens,
        seconds=_seconds(task.started_at, task.completed_at),
        cost_micros=task_cost_micros(task, price),
    )


def session_usage(session: BrowserSession) -> dict[str, Any]:
    """The session's usage; `computeTime` is the billed wall time (metering.session_compute_ms)."""
    usage = usage_object(
        input_tokens=session.input_tokens,
        output_tokens=session.output_tokens,
        seconds=session_compute_ms(session) / 1000,
        cost_micros=session.cost_micros,
    )
    # An addition: bytes through the egress gate (sent, received), for a later price per GB.
    usage["networkBytesSent"] = session.egress_bytes_sent
    usage["networkBytesReceived"] = session.egress_bytes_received
    return usage


def task_data(task: Task) -> dict[str, Any]:
    data: dict[str, Any] = {"message": task.result_message}
    data.update(task.result_data or {})
    return data


def task_response(task: Task, *, poll_url: str, inline: bool = False) -> dict[str, Any]:
    """The task body for inline responses and polls: both generations' shapes (README §5).
    An unfinished task polls as `status: "active"` with live usage and answers inline with
    `status: "pending"` (seed 002); `state` tells queued, running and paused apart."""
    session = task.session
    usage = task_usage(task)
    base: dict[str, Any] = {"success": True, "sessionId": session.pk, "taskId": task.pk}
    if task.state == Task.State.COMPLETED:
        # Seed 002 lists the token fields in `data` of both the poll and the inline answer.
        data = {
            **task_data(task),
            **{key: usage[key] for key in ("prompt_tokens", "completion_tokens", "total_tokens", "completion_time")},
        }
        base.update(
            {
                "status": "complete",
                "type": "task_completed",
                "data": data,
                "usage": usage,
                "result": {"type": "task_completed", "data": data, "usage": usage},
                "completedAt": timestamp(task.completed_at),
            }
        )
        return base
    if task.state == Task.State.GUARDRAIL:
        base.update(
            {
                "status": "guardrail_trigger",
                "type": "guardrail_trigger",
                "data": {"type": "human_input_needed", "value": task.guardrail_question},
                "usage": usage,
            }
        )
        return base
    if task.state in (Task.State.FAILED, Task.State.STOPPED, Task.State.TERMINATED):
        message = task.error or {"stopped": "Task was stopped", "terminated": "Session was terminated"}.get(
            task.state, "Task failed"
        )
        base.update(
            {
                "success": False,
                "status": task.state,
                "error": message,
                "message": message,
                "code": task.code or task.state.upper(),
                "details": task.error_details or {},
                "usage": usage,
            }
        )
        return base
    state = (
        "paused"
        if (session.paused or session.human_control) and task.state == Task.State.RUNNING
        else ("running" if task.state == Task.State.RUNNING else "queued")
    )
    base.update(
        {
            # Seed 002: a poll of an unfinished task says "active"; the inline answer says "pending".
            "status": "pending" if inline else "active",
            "state": state,
            "pending": True,
            "pollUrl": poll_url,
            "message": "Task still running. Poll GET /task/:sessionId/:taskId for result.",
            "usage": usage,
        }
    )
    return base


def session_detail(session: BrowserSession, *, base_url: str) -> dict[str, Any]:
    tasks = list(session.tasks.all())
    price = price_at(session.created_at) if tasks else None  # a start's polls have no task to price
    return {
        "sessionId": session.pk,
        "state": session.state,
        "endReason": session.end_reason or None,
        "paused": session.paused,
        "humanControl": session.human_control,
        "currentUrl": session.current_url or None,
        "currentTitle": session.current_title or None,
        "createdAt": timestamp(session.created_at),
        "startedAt": timestamp(session.started_at),
        "lastActivityAt": timestamp(session.last_activity_at),
        "endedAt": timestamp(session.ended_at),
        "config": session.config,
        "cdp": cdp_status(session),  # raw CDP access: enabled, clients connected now
        "usage": session_usage(session),
        "tasks": [
            {
                "taskId": t.pk,
                "status": t.state,
                "prompt": t.prompt,
                "createdAt": timestamp(t.created_at),
                "startedAt": timestamp(t.started_at),
                "completedAt": timestamp(t.completed_at),
                "pollUrl": f"{base_url}/task/{session.pk}/{t.pk}",
                "usage": task_usage(t, price),
            }
            for t in tasks
        ],
    }


def session_summary(session: BrowserSession) -> dict[str, Any]:
    return {
        "sessionId": session.pk,
        "state": session.state,
        "endReason": session.end_reason or None,
        "createdAt": timestamp(session.created_at),
        "endedAt": timestamp(session.ended_at),
        "currentUrl": session.current_url or None,
        "usage": session_usage(session),
    }
