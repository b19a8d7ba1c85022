"""Writes of webhooks: the team's signing secret, a task's deliveries and their attempts."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import requests
from django.conf import settings
from django.db.models import F
from django.utils import timezone

from enigma_site import api
from sessions_app.models import Task
from sessions_app.selectors import task_data, task_usage
from sessions_app.webhook_address import url_block_reason

from . import signing
from .models import WebhookDelivery, WebhookSecret


def webhook_secret_get(*, team_id: int) -> str:
    """The team's signing secret, created on first use."""
    row, _ = WebhookSecret.objects.get_or_create(team_id=team_id, defaults={"secret": "whsec_" + secrets.token_hex(24)})
    return row.secret


def webhook_secret_rotate(*, team_id: int) -> str:
    secret = "whsec_" + secrets.token_hex(24)
    WebhookSecret.objects.update_or_create(team_id=team_id, defaults={"secret": secret})
    return secret


def webhook_schedule(*, team_id: int, session_id: str, task_id: str, webhook: dict[str, Any]) -> WebhookDelivery:
    """Record a task's webhook at submit time; it is sent when the task finishes."""
    return WebhookDelivery.objects.create(
        team_id=team_id,
        session_id=session_id,
        task_id=task_id,
        name=webhook.get("name") or "",
        url=webhook["url"],
        auth=webhook.get("auth") or "",
        submitted_data=webhook.get("submittedData") or "full_response",
    )


def webhook_payload(*, submitted_data: str, task: Any) -> Any:
    """The body for one of the three documented kinds (api.md §5.7)."""
    completed_at = api.timestamp(task.completed_at)
    if submitted_data == "just_ping":
        return {"event": "task_completed", "sessionId": task.session_id, "taskId": task.pk, "completedAt": completed_at}
    if submitted_data == "ai_response":
        if task.config.get("outputType") == "structured_json":
            try:
                return json.loads(task.result_message)
            except ValueError:
                pass
        return {"message": task.result_message}
    usage = task_usage(task)
    data = {
        **task_data(task),
        "prompt_tokens": usage["prompt_tokens"],
        "completion_tokens": usage["completion_tokens"],
        "total_tokens": usage["total_tokens"],
        "completion_time": usage["completion_time"],
    }
    return {
        "type": "task_completed",
        "sessionId": task.session_id,
        "taskId": task.pk,
        "data": data,
        "usage": {k: usage[k] for k in ("inputTokens", "outputTokens", "computeTime", "cost")},
        "completedAt": completed_at,
    }


def webhooks_task_finished(*, task_id: str) -> list[str]:
    """Fix the payloads of a finished task's webhooks; return the ids to send.

    Only completed tasks are delivered (the documented event); the others are marked skipped.
    A second call finds nothing scheduled and returns [] (safe to run twice).
    """
    task = Task.objects.filter(pk=task_id).first()
    if task is None:
        return []
    ids = []
    for delivery in WebhookDelivery.objects.filter(task_id=task_id, status=WebhookDelivery.Status.SCHEDULED):
        if task.state != Task.State.COMPLETED:
            WebhookDelivery.objects.filter(pk=delivery.pk).update(status=WebhookDelivery.Status.SKIPPED)
            continue
        payload = webhook_payload(submitted_data=delivery.submitted_data, task=task)
        if (
            WebhookDelivery.objects.filter(pk=delivery.pk, status=WebhookDelivery.Status.SCHEDULED).update(
                status=WebhookDelivery.Status.PENDING, payload=payload
            )
            == 1
        ):
            ids.append(delivery.pk)
    return ids


class WebhookAttemptFailed(Exception):
    """One delivery attempt failed; the Celery task retries with backoff."""


def webhook_attempt(*, delivery_id: str, final: bool) -> None:
    """Send one attempt; log it on the row. Raise WebhookAttemptFailed unless delivered."""
    delivery = WebhookDelivery.objects.filter(pk=delivery_id).first()
    if delivery is None or delivery.status != WebhookDelivery.Status.PENDING:
        return
    body = json.dumps(delivery.payload, separators=(",", ":")).encode()
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Enigma-Webhooks/1",
        signing.SIGNATURE_HEADER: signing.signature(webhook_secret_get(team_id=delivery.team_id), timestamp, body),
        signing.DELIVERY_HEADER: delivery.pk,
        signing.EVENT_HEADER: "task_completed",
    }
    if delivery.auth:
        headers["Authorization"] = delivery.auth
    started = time.monotonic()
    status_code, error = None, ""
    reason = url_block_reason(delivery.url, allowed_hosts=frozenset(settings.ENIGMA_ALLOWED_PRIVATE_HOSTS))
    if reason is not None:
        error = f"blocked: {reason}"
    else:
        try:
            response = requests.post(
                delivery.url,
                data=body,
                headers=headers,
                timeout=settings.ENIGMA_WEBHOOK_TIMEOUT_S,
                allow_redirects=False,
            )
            status_code = response.status_code
        except requests.RequestException as exc:
            error = type(exc).__name__
    ok = status_code is not None and 200 <= status_code < 300
    entry = {
        "at": api.timestamp(timezone.now()),
        "statusCode": status_code,
        "error": error,
        "ms": int((time.monotonic() - started) * 1000),
    }
    status = (
        WebhookDelivery.Status.DELIVERED
        if ok
        else (WebhookDelivery.Status.FAILED if final else WebhookDelivery.Status.PENDING)
    )
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        attempts=F("attempts") + 1,
        attempt_log=[*delivery.attempt_log, entry],
        status=status,
        delivered_at=timezone.now() if ok else None,
    )
    if not ok:
        raise WebhookAttemptFailed(error or f"HTTP {status_code}")
