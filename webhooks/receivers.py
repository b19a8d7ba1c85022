"""What the webhooks app does when the sessions app announces a task (sessions_app.signals)."""

from __future__ import annotations

from typing import Any

from sessions_app.models import Task

from . import services
from .tasks import deliver_webhook


def task_created(sender: Any, *, task: Task, webhook: dict[str, Any] | None, **kwargs: Any) -> None:
    """Record the task's webhook (in the task's transaction); it is sent when the task finishes."""
    if webhook is not None:
        services.webhook_schedule(
            team_id=task.session.team_id, session_id=task.session_id, task_id=task.pk, webhook=webhook
        )


def task_finished(sender: Any, *, task_id: str, **kwargs: Any) -> None:
    """Send the finished task's webhooks. Safe to run twice."""
    for delivery_id in services.webhooks_task_finished(task_id=task_id):
        deliver_webhook.delay(delivery_id)
