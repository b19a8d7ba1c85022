"""REST endpoints: the team's webhook signing secret, a task's deliveries (api.md §5.7)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from enigma_site.api import ApiView, ok
from sessions_app.selectors import task_get

from . import selectors, services
from . import serializers as shapes


class WebhookSecretApi(ApiView):
    """The team's webhook signing secret and how the signature is made."""

    @extend_schema(responses={200: shapes.WebhookSecretSerializer})
    def get(self, request: Request) -> Response:
        return ok(secret=services.webhook_secret_get(team_id=self.principal.team.pk), **_signature_doc())


class WebhookSecretRotateApi(ApiView):
    @extend_schema(request=None, responses={200: shapes.WebhookSecretSerializer})
    def post(self, request: Request) -> Response:
        return ok(secret=services.webhook_secret_rotate(team_id=self.principal.team.pk), **_signature_doc())


class TaskWebhooksApi(ApiView):
    @extend_schema(responses={200: shapes.TaskDeliveriesSerializer})
    def get(self, request: Request, session_id: str, task_id: str) -> Response:
        task = task_get(team=self.principal.team, session_id=session_id, task_id=task_id)
        deliveries = selectors.task_webhook_deliveries(team=self.principal.team, task_id=task.pk)
        return ok(deliveries=[selectors.delivery_body(d) for d in deliveries])


def _signature_doc() -> dict[str, Any]:
    return {
        "header": "Enigma-Signature",
        "format": "t=<unix seconds>,v1=<hex HMAC-SHA256(secret, '<t>.<raw body>')>",
        "toleranceSeconds": settings.ENIGMA_WEBHOOK_TOLERANCE_S,
    }
