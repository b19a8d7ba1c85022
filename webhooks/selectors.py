"""Reads of webhook deliveries, always scoped to a team."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from accounts.models import Team
from enigma_site.api import timestamp

from .models import WebhookDelivery


def _team_id(team: Team | int) -> int:
    return team if isinstance(team, int) else team.pk


def task_webhook_deliveries(*, team: Team | int, task_id: str) -> QuerySet[WebhookDelivery]:
    return WebhookDelivery.objects.filter(team_id=_team_id(team), task_id=task_id).order_by("created_at")


def delivery_body(delivery: WebhookDelivery) -> dict[str, Any]:
    return {
        "deliveryId": delivery.pk,
        "name": delivery.name,
        "url": delivery.url,
        "submittedData": delivery.submitted_data,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "log": delivery.attempt_log,
        "createdAt": timestamp(delivery.created_at),
        "deliveredAt": timestamp(delivery.delivered_at),
    }
