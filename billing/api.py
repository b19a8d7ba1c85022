"""Account endpoints (API-key auth) and the Stripe webhook."""

from __future__ import annotations

import logging
from datetime import date, timedelta
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import ApiKey
from enigma_site.api import ApiView, ok, timestamp
from enigma_site.errors import InvalidParameter

from . import selectors, serializers, services
from .money import micros_to_usd
from .selectors import UsageTotals

logger = logging.getLogger(__name__)

MAX_USAGE_DAYS = 366


def usage_body(totals: UsageTotals) -> dict[str, Any]:
    """A usage total in the API's shape: USD `cost` plus exact `costMicros`."""
    return {
        "cost": micros_to_usd(totals.cost_micros),
        "costMicros": totals.cost_micros,
        "inputTokens": totals.input_tokens,
        "outputTokens": totals.output_tokens,
        "computeTime": round(totals.compute_ms / 1000, 3),
        "entries": totals.entries,
    }


def _date_param(request: Request, name: str, default: date) -> date:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        raise InvalidParameter(name, f"Invalid parameter '{name}': must be a date YYYY-MM-DD", value=raw) from None
    if day == date.max:  # a range ends at the start of the day after, which is no date
        raise InvalidParameter(name, f"Invalid parameter '{name}': must be before {date.max}", value=raw)
    return day


class AccountApi(ApiView):
    """GET /account: the key's team, its balance, this month's usage and the prices."""

    @extend_schema(responses={200: serializers.AccountSerializer})
    def get(self, request: Request) -> Response:
        team = self.principal.team
        start = selectors.month_start()
        end = timezone.now()
        balance = selectors.team_balance_micros(team=team)
        price = selectors.current_price()
        return ok(
            team={"id": team.pk, "name": team.name},
            balance=micros_to_usd(balance),
            balanceMicros=balance,
            currency="usd",
            usage={
                "from": timestamp(start),
                "to": timestamp(end),
                **usage_body(selectors.usage_totals(team=team, start=start, end=end)),
            },
            prices={
                "inputPerMillionTokens": micros_to_usd(price.input_per_million_micros),
                "outputPerMillionTokens": micros_to_usd(price.output_per_million_micros),
                "computePerMinute": micros_to_usd(price.compute_per_minute_micros),
            },
        )


class AccountUsageApi(ApiView):
    """GET /account/usage?from=YYYY-MM-DD&to=YYYY-MM-DD&group=day|key|session.

    Dates are inclusive UTC days; the default range is this month up to today, grouped by day.
    """

    @extend_schema(parameters=[serializers.UsageQuerySerializer], responses={200: serializers.AccountUsageSerializer})
    def get(self, request: Request) -> Response:
        today = timezone.now().date()
        start_day = _date_param(request, "from", selectors.month_start().date())
        end_day = _date_param(request, "to", today)
        if end_day < start_day:
            raise InvalidParameter("to", "Invalid parameter 'to': must not be before 'from'")
        if (end_day - start_day) >= timedelta(days=MAX_USAGE_DAYS):
            raise InvalidParameter("to", f"Invalid parameter 'to': at most {MAX_USAGE_DAYS} days after 'from'")
        group = request.query_params.get("group") or "day"
        if group not in selectors.USAGE_GROUPS:
            raise InvalidParameter(
                "group", "Invalid parameter 'group': must be one of " + ", ".join(selectors.USAGE_GROUPS), value=group
            )
        team = self.principal.team
        start, end = selectors.day_bounds(start_day, end_day)
        rows = selectors.usage_grouped(team=team, start=start, end=end, group=group)
        keys: dict[int, ApiKey] = {}
        if group == "key":
            keys = ApiKey.objects.filter(team=team, pk__in=[k for k, _ in rows if k]).in_bulk()
        items = []
        for bucket, totals in rows:
            item: dict[str, Any]
            if group == "day":
                item = {"day": bucket.isoformat()}
            elif group == "key":
                key = keys.get(bucket) if bucket else None
                item = {"apiKey": {"id": key.pk, "name": key.name, "key": key.display} if key else None}
            else:
                item = {"sessionId": bucket or None}
            items.append({**item, **usage_body(totals)})
        return ok(
            {
                "from": start_day.isoformat(),
                "to": end_day.isoformat(),
                "group": group,
                "usage": items,
                "total": usage_body(selectors.usage_totals(team=team, start=start, end=end)),
            }
        )


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> JsonResponse:
    """POST /billing/stripe/webhook: verify, store once, then apply the event.

    400 for a bad or stale signature; 500 when applying fails (Stripe retries; the failure is
    recorded on the StripeEvent row); 200 otherwise, also for replays.
    """
    try:
        event = services.stripe_event_record(
            payload=request.body, signature=request.headers.get("Stripe-Signature", "")
        )
    except services.WebhookSignatureInvalid as exc:
        return JsonResponse({"success": False, "error": exc.message, "code": exc.code}, status=400)
    try:
        event = services.stripe_event_process(event=event)
    except Exception as exc:  # the outermost boundary: record, log, let Stripe retry
        logger.exception("Stripe event %s failed", event.stripe_id)
        services.stripe_event_mark_failed(event=event, error=repr(exc))
        return JsonResponse({"success": False, "error": "Event processing failed"}, status=500)
    return JsonResponse({"success": True, "id": event.stripe_id, "status": event.status})


account = AccountApi.as_view()
account_usage = AccountUsageApi.as_view()
