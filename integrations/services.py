"""What the OpenAI-compatible endpoint and the MCP server share: waiting for a task, giving up on a session.

Both adapters start sessions and tasks through `sessions_app.services` (same validation, same
402/503 checks, same metering by the session runner); this module only adds the waiting.
"""

from __future__ import annotations

from channels.db import database_sync_to_async

from sessions_app import selectors
from sessions_app import services as session_services
from sessions_app.events import wait_task_settled
from sessions_app.models import Task
from sessions_app.schema import Message

# How long past a task's own maxDuration a caller keeps waiting (queueing, browser start, upload).
WAIT_GRACE_S = 60.0


def task_wait_timeout(task: Task) -> float:
    """Seconds a caller may wait for the task: its maxDuration plus a grace period."""
    return int(task.config.get("maxDuration", 300_000)) / 1000 + WAIT_GRACE_S


@database_sync_to_async
def task_reload(*, team_id: int, session_id: str, task_id: str) -> Task:
    return selectors.task_get(team=team_id, session_id=session_id, task_id=task_id)


async def task_wait(*, team_id: int, session_id: str, task_id: str, timeout: float) -> Task:
    """Wait (holding no thread) until the task leaves queued/running or `timeout` passes; return it."""
    await wait_task_settled(task_id, timeout)
    return await task_reload(team_id=team_id, session_id=session_id, task_id=task_id)


def session_abandon(*, team_id: int, session_id: str) -> None:
    """Terminate a session nobody can use any more (client gone, unanswerable guardrail, timeout).

    A session that has already ended is left as it is.
    """
    session = selectors.session_get(team=team_id, session_id=session_id)
    if not session.is_live:
        return
    try:
        session_services.session_message(session=session, message=Message(action_type="state", new_state="terminate"))
    except session_services.SessionNotActive:
        pass


async def asession_abandon(*, team_id: int, session_id: str) -> None:
    await database_sync_to_async(session_abandon)(team_id=team_id, session_id=session_id)
