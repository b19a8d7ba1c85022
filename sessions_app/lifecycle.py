"""The lifecycle of tasks and sessions: every change of `Task.state` and `BrowserSession.state`.

Each change is one function: a conditional UPDATE (it happens once; a duplicate call, a
concurrent claim or a change that raced it returns False and does nothing), then its event
and its notification. Events are stored with the change; what leaves the process (the
broadcast to sockets, the Redis notification of task waiters, Celery messages) goes after
the commit. Nothing else writes those two columns.

Tasks:    queued -> running (task_start) <-> guardrail (task_guardrail_raise / _answered)
          open -> completed / failed / stopped (task_finish), failed (task_fail),
          terminated (with its session, session_end)
Sessions: pending / orphaned -> active (session_activate) -> orphaned (session_orphan,
          session_hand_off) ; live -> completed / terminated / failed (session_end)

The functions are synchronous; the runner calls them through `db()`.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import F
from django.utils import timezone

from environments import services as environment_services

from . import metering
from . import tasks as session_tasks
from .commands import commands_delete
from .events import event_emit, task_notify
from .models import BrowserSession, Task
from .selectors import task_usage

logger = logging.getLogger(__name__)

SESSION_LOST_ERROR = "The browser instance was lost while the task was running; the task was not completed"
INTERNAL_ERROR = "The task failed because of an internal error"


def _notify_after_commit(task_id: str, state: str) -> None:
    transaction.on_commit(lambda: task_notify(task_id, state))


# ----- tasks -----------------------------------------------------------------------------------


def task_start(*, session_id: str, task_id: str) -> bool:
    """Claim a queued task for running (once); emit `task_started`."""
    with transaction.atomic():
        if (
            Task.objects.filter(pk=task_id, state=Task.State.QUEUED).update(
                state=Task.State.RUNNING, started_at=timezone.now()
            )
            != 1
        ):
            return False
        event_emit(
            session_id=session_id,
            name="message",
            task_id=task_id,
            payload={"type": "task_started", "taskId": task_id, "data": {"taskId": task_id}},
        )
    return True


def task_guardrail_raise(*, session_id: str, task_id: str, question: str) -> bool:
    """A running task waits for a human's answer to `question` (already scrubbed of secrets)."""
    with transaction.atomic():
        if (
            Task.objects.filter(pk=task_id, state=Task.State.RUNNING).update(
                state=Task.State.GUARDRAIL, guardrail_question=question
            )
            != 1
        ):
            return False
        event_emit(
            session_id=session_id,
            name="message",
            task_id=task_id,
            payload={
                "type": "guardrail_trigger",
                "taskId": task_id,
                "data": {"type": "human_input_needed", "value": question},
            },
        )
        _notify_after_commit(task_id, Task.State.GUARDRAIL)
    return True


def task_guardrail_answered(*, session_id: str, task_id: str) -> bool:
    """The human answered: the task runs on."""
    with transaction.atomic():
        if (
            Task.objects.filter(pk=task_id, state=Task.State.GUARDRAIL).update(
                state=Task.State.RUNNING, guardrail_question=""
            )
            != 1
        ):
            return False
        event_emit(
            session_id=session_id,
            name="message",
            task_id=task_id,
            payload={
                "type": "response_update",
                "taskId": task_id,
                "data": {"message": "Got the answer; continuing the task."},
            },
        )
    return True


def task_finish(
    *,
    session_id: str,
    task_id: str,
    state: str,
    result_message: str = "",
    result_data: dict[str, Any] | None = None,
    error: str = "",
    code: str = "",
    error_details: dict[str, Any] | None = None,
) -> bool:
    """Settle an open task with the agent's outcome (completed, failed or stopped), once; charge
    the session's usage so far against the task; emit `task_completed` or `error` with the
    task's usage; notify its waiters; send its webhooks and settle its trigger run. Returns
    False, doing nothing, when the task was settled already (its session ended meanwhile).
    The caller scrubs secrets from what it passes."""
    fields: dict[str, Any] = {"result_message": result_message, "error": error, "code": code}
    if result_data is not None:
        fields["result_data"] = result_data
    if error_details is not None:
        fields["error_details"] = error_details
    if (
        Task.objects.filter(pk=task_id, state__in=Task.OPEN_STATES).update(
            state=state, completed_at=timezone.now(), **fields
        )
        != 1
    ):
        return False
    try:
        metering.session_meter(session_id=session_id, task_id=task_id)
    except DatabaseError:  # the next meter run charges it (without the task's id on the entry)
        logger.exception("metering task %s failed", task_id)
    task = Task.objects.get(pk=task_id)
    usage = task_usage(task)
    if state == Task.State.COMPLETED:
        data = {"message": task.result_message, **(task.result_data or {})}
        payload = {"type": "task_completed", "sessionId": session_id, "taskId": task_id, "data": data, "usage": usage}
    else:
        payload = {
            "type": "error",
            "taskId": task_id,
            "status": state,
            "error": task.error,
            "code": task.code,
            "details": task.error_details,
            "usage": usage,
        }
    event_emit(session_id=session_id, name="message", task_id=task_id, payload=payload)
    _notify_after_commit(task_id, state)
    transaction.on_commit(lambda: session_tasks.task_finished.delay(task_id))  # webhooks, trigger runs
    return True


def task_fail(
    *,
    session_id: str,
    task_id: str,
    code: str,
    error: str,
    message: str | None = None,
    from_states: tuple[str, ...] = Task.OPEN_STATES,
    announce: bool = True,
) -> bool:
    """Fail a task for a reason outside the agent's run (a crash of our code, a lost or drained
    worker, an empty balance), once. With `announce`, emit an `error` event whose text is
    `message` (default `error`). Notifies the task's waiters."""
    with transaction.atomic():
        if (
            Task.objects.filter(pk=task_id, state__in=from_states).update(
                state=Task.State.FAILED, completed_at=timezone.now(), code=code, error=error
            )
            != 1
        ):
            return False
        if announce:
            event_emit(
                session_id=session_id,
                name="message",
                task_id=task_id,
                payload={
                    "type": "error",
                    "taskId": task_id,
                    "status": Task.State.FAILED,
                    "error": message or error,
                    "code": code,
                },
            )
        _notify_after_commit(task_id, Task.State.FAILED)
    return True


def task_fail_crashed(*, session_id: str, task_id: str) -> bool:
    """Our own code crashed while running the task: it fails with INTERNAL_ERROR."""
    return task_fail(session_id=session_id, task_id=task_id, code="INTERNAL_ERROR", error=INTERNAL_ERROR)


# ----- sessions --------------------------------------------------------------------------------


def session_claim(*, session_id: str, worker_id: str) -> int | None:
    """Claim a session for this worker; returns the new generation, or None if not ours to host.

    A pending or orphaned session can be claimed; so can an active one whose runner stopped
    heart-beating. The conditional UPDATE makes a duplicate delivery a no-op. (The state does
    not change here: `session_activate` makes it active once its browser is ready.)
    """
    stale = timezone.now() - timedelta(seconds=settings.ENIGMA_HEARTBEAT_STALE_S)
    session = BrowserSession.objects.filter(pk=session_id).first()
    if session is None or not session.is_live:
        return None
    if session.state == BrowserSession.State.ACTIVE and session.heartbeat_at and session.heartbeat_at > stale:
        return None
    claimed = BrowserSession.objects.filter(
        pk=session_id, generation=session.generation, state__in=BrowserSession.LIVE_STATES
    ).update(worker_id=worker_id, generation=F("generation") + 1, heartbeat_at=timezone.now())
    return session.generation + 1 if claimed == 1 else None


def session_activate(
    *, session_id: str, generation: int, started_at: datetime | None, takeover: bool, page: dict[str, str]
) -> bool:
    """The runner holding `generation` has the session's browser ready: the session is active
    (with its URL and title in `page`, scrubbed); emit `instance:reconnected` after a takeover,
    then `session_active`. False when the session ended or another claim superseded ours."""
    now = timezone.now()
    with transaction.atomic():
        if (
            BrowserSession.objects.filter(
                pk=session_id, generation=generation, state__in=BrowserSession.LIVE_STATES
            ).update(
                state=BrowserSession.State.ACTIVE,
                started_at=started_at or now,
                orphaned_at=None,
                heartbeat_at=now,
                **page,
            )
            != 1
        ):
            return False
        if takeover:
            event_emit(
                session_id=session_id,
                name="instance:reconnected",
                payload={"type": "instance:reconnected", "message": "Instance connection restored"},
            )
        event_emit(session_id=session_id, name="message", payload={"type": "session_active", "sessionId": session_id})
    return True


def session_orphan(*, session: BrowserSession, now: datetime) -> bool:
    """The sweep found the session's worker lost: the session is orphaned (until another worker
    takes it over or the grace period ends), its running task fails with INSTANCE_LOST.

    Decision: the task that was running is failed, not re-run: its side effects on the site are
    unknown. Queued tasks run after the takeover."""
    if (
        BrowserSession.objects.filter(pk=session.pk, generation=session.generation, state=session.state).update(
            state=BrowserSession.State.ORPHANED, orphaned_at=now
        )
        != 1
    ):
        return False
    for task in Task.objects.filter(session=session, state__in=(Task.State.RUNNING, Task.State.GUARDRAIL)):
        task_fail(
            session_id=session.pk,
            task_id=task.pk,
            code="INSTANCE_LOST",
            error=SESSION_LOST_ERROR,
            message="The browser instance was lost",
            from_states=(task.state,),
        )
    event_emit(
        session_id=session.pk,
        name="instance:disconnected",
        payload={
            "type": "instance:disconnected",
            "message": "Instance connection lost. Attempting reconnection...",
            "gracePeriod": int(settings.ENIGMA_ORPHAN_GRACE_S * 1000),
        },
    )
    return True


def session_hand_off(*, session_id: str, generation: int, worker_id: str) -> bool:
    """Release an active session that `worker_id` hosts, between its tasks, for another host to
    take over from its checkpoint (a drain). No task fails; clients see `instance:disconnected`
    with `reason: "migrating"`, then `instance:reconnected` from the next host, and compute is
    not charged in between (sessions_app.metering). Returns False if it is not ours any more."""
    moved = BrowserSession.objects.filter(
        pk=session_id,
        generation=generation,
        worker_id=worker_id,
        state=BrowserSession.State.ACTIVE,
    ).update(state=BrowserSession.State.ORPHANED, orphaned_at=timezone.now(), worker_id="")
    if moved != 1:
        return False
    event_emit(
        session_id=session_id,
        name="instance:disconnected",
        payload={
            "type": "instance:disconnected",
            "reason": "migrating",
            "message": "Moving the session to another browser host; it reconnects in a moment",
            "gracePeriod": int(settings.ENIGMA_ORPHAN_GRACE_S * 1000),
        },
    )
    return True


def session_end(*, session_id: str, state: str, reason: str, generation: int | None = None) -> bool:
    """End a live session once (conditional update), with its open tasks (terminated,
    SESSION_ENDED); save its last checkpoint into its environment; delete its command stream;
    emit `end_session`; post its final charge. Returns False when it had ended already.

    With `generation`, only the runner holding that generation may end it. A final charge that
    fails is logged; the sweep's `sessions_meter_ended` posts it on its next run.
    """
    now = timezone.now()
    query = BrowserSession.objects.filter(pk=session_id, state__in=BrowserSession.LIVE_STATES)
    if generation is not None:
        query = query.filter(generation=generation)
    snapshot = BrowserSession.objects.filter(pk=session_id).values("storage_state", "config").first()
    # The session and its open tasks end together: no reader sees an ended session whose
    # task still runs.
    with transaction.atomic():
        if (
            query.update(
                state=state, end_reason=reason, ended_at=now, paused=False, human_control=False, storage_state=None
            )
            != 1
        ):
            return False
        open_tasks = list(
            Task.objects.filter(session_id=session_id, state__in=Task.OPEN_STATES).values_list("pk", flat=True)
        )
        Task.objects.filter(pk__in=open_tasks, state__in=Task.OPEN_STATES).update(
            state=Task.State.TERMINATED,
            completed_at=now,
            error=f"Session ended ({reason}) before the task finished",
            code="SESSION_ENDED",
        )
    if snapshot and snapshot["config"].get("environmentId"):
        # Also after an orphan takeover or a lost worker: the last checkpoint is the state.
        # Saving releases the environment for the next session (none: released unsaved).
        try:
            environment_services.environment_state_save(
                environment_id=snapshot["config"]["environmentId"],
                state=snapshot["storage_state"],
                session_id=session_id,
            )
        except OSError:
            logger.exception("could not save the browser state of session %s", session_id)
    commands_delete(session_id)  # with any secrets of tasks that never ran
    for task_id in open_tasks:
        _notify_after_commit(task_id, Task.State.TERMINATED)
    event_emit(
        session_id=session_id,
        name="end_session",
        payload={"type": "end_session", "reason": reason, "message": "Session ended"},
    )
    try:
        metering.session_meter(session_id=session_id)
    except DatabaseError:
        logger.exception("the final charge of session %s failed; the sweep posts it", session_id)
    return True
