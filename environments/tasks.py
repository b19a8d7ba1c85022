"""Celery tasks: thin adapters around this app's services."""

from __future__ import annotations

from celery import shared_task

from . import conf, services


@shared_task(name="environments.delete_orphan_files", ignore_result=True)
def delete_orphan_files() -> int:
    return services.files_delete_orphans()


@shared_task(name="environments.delete_expired_downloads", ignore_result=True)
def delete_expired_downloads() -> int:
    return services.files_delete_expired_downloads()


@shared_task(name="environments.task_finished", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def task_finished(task_id: str) -> None:
    """A task reached its end: send its webhooks, settle its trigger run. Safe to run twice."""
    for delivery_id in services.webhooks_task_finished(task_id=task_id):
        deliver_webhook.delay(delivery_id)
    services.trigger_runs_task_finished(task_id=task_id)


@shared_task(
    name="environments.deliver_webhook",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    max_retries=None,
)
def deliver_webhook(self, delivery_id: str) -> None:  # type: ignore[no-untyped-def]
    """One attempt; a failure is retried with exponential backoff up to the attempt limit."""
    attempts = conf.webhook_max_attempts()
    final = self.request.retries + 1 >= attempts
    try:
        services.webhook_attempt(delivery_id=delivery_id, final=final)
    except services.WebhookAttemptFailed as exc:
        if final:
            return
        raise self.retry(exc=exc, countdown=conf.webhook_retry_base_s() * 2**self.request.retries) from exc


@shared_task(name="environments.run_due_triggers", ignore_result=True)
def run_due_triggers() -> list[str]:
    return services.triggers_run_due()


@shared_task(name="environments.run_trigger", acks_late=True, ignore_result=True)
def run_trigger(trigger_id: str) -> None:
    """POST /cron-jobs/:id/trigger: one run now, outside the schedule."""
    services.trigger_run_start(trigger_id=trigger_id, manual=True)
