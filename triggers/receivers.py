"""What the triggers app does when the sessions app announces a task (sessions_app.signals)."""

from __future__ import annotations

from typing import Any

from . import services


def task_finished(sender: Any, *, task_id: str, **kwargs: Any) -> None:
    """Settle the trigger run of the finished task, if it is one. Safe to run twice."""
    services.trigger_runs_task_finished(task_id=task_id)
