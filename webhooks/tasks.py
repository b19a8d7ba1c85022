"""Celery tasks: thin adapters around this app's services (names kept from before the app split)."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from . import services


@shared_task(
    name="environments.deliver_webhook",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    max_retries=None,
)
def deliver_webhook(self, delivery_id: str) -> None:
    """One attempt; a failure is retried with exponential backoff up to the attempt limit."""
    attempts = settings.ENIGMA_WEBHOOK_MAX_ATTEMPTS
    final = self.request.retries + 1 >= attempts
    try:
        services.webhook_attempt(delivery_id=delivery_id, final=final)
    except services.WebhookAttemptFailed as exc:
        if final:
            return
        raise self.retry(exc=exc, countdown=settings.ENIGMA_WEBHOOK_RETRY_BASE_S * 2**self.request.retries) from exc
