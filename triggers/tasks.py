"""Celery tasks: thin adapters around this app's services (names kept from before the app split)."""

from __future__ import annotations

from celery import shared_task

from . import services


@shared_task(name="environments.run_due_triggers", ignore_result=True)
def run_due_triggers() -> list[str]:
    return services.triggers_run_due()


@shared_task(name="environments.run_trigger", acks_late=True, ignore_result=True)
def run_trigger(trigger_id: str) -> None:
    """POST /cron-jobs/:id/trigger: one run now, outside the schedule."""
    services.trigger_run_start(trigger_id=trigger_id, manual=True)
