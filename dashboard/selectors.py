"""Reads for the dashboard pages, always taking the team first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from django.db.models import Count, QuerySet
from django.utils import timezone

from accounts.models import ApiKey, Membership, Team
from billing import selectors as billing
from billing.models import LedgerEntry
from sessions_app.models import BrowserSession
from sessions_app.selectors import session_list

SESSIONS_PAGE = 50


def membership_list(*, team: Team) -> QuerySet[Membership]:
    return Membership.objects.filter(team=team).select_related("user").order_by("user__email")


def membership_get(*, team: Team, membership_id: int) -> Membership | None:
    return Membership.objects.filter(team=team, pk=membership_id).select_related("team", "user").first()


def api_key_list(*, team: Team) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(team=team).select_related("created_by").order_by("revoked_at", "-created_at")


def api_key_get(*, team: Team, key_id: int) -> ApiKey | None:
    return ApiKey.objects.filter(team=team, pk=key_id).first()


def dashboard_sessions(*, team: Team, state: str | None = None, limit: int = SESSIONS_PAGE) -> list[BrowserSession]:
    """The team's newest sessions with `task_count` annotated."""
    query = session_list(team=team, state=state or None).annotate(task_count=Count("tasks"))
    return list(query.select_related("api_key")[:limit])


def session_counts(*, team: Team) -> dict[str, int]:
    rows = BrowserSession.objects.filter(team=team).values("state").annotate(n=Count("id"))
    return {row["state"]: row["n"] for row in rows}


@dataclass(frozen=True)
class DayUsage:
    day: date
    cost_micros: int
    token_cost_micros: int
    compute_cost_micros: int
    input_tokens: int
    output_tokens: int
    compute_ms: int


def usage_by_day(*, team: Team, days: int = 30) -> list[DayUsage]:
    """The last `days` UTC days of usage, oldest first, a row for every day (zeros included).

    The ledger records one amount per entry; the split into tokens and compute applies today's
    prices to the day's meters, and compute takes whatever the tokens leave of the real total.
    """
    today = timezone.now().date()
    first = today - timedelta(days=days - 1)
    start, end = billing.day_bounds(first, today)
    grouped = {bucket: totals for bucket, totals in billing.usage_grouped(team=team, start=start, end=end, group="day")}
    price = billing.current_price()
    rows = []
    for offset in range(days):
        day = first + timedelta(days=offset)
        totals = grouped.get(day)
        if totals is None:
            rows.append(DayUsage(day, 0, 0, 0, 0, 0, 0))
            continue
        tokens = min(
            totals.cost_micros,
            price.token_cost_micros(input_tokens=totals.input_tokens, output_tokens=totals.output_tokens),
        )
        rows.append(
            DayUsage(
                day,
                totals.cost_micros,
                tokens,
                max(totals.cost_micros - tokens, 0),
                totals.input_tokens,
                totals.output_tokens,
                totals.compute_ms,
            )
        )
    return rows


@dataclass(frozen=True)
class Breakdown:
    label: str
    ref: str
    cost_micros: int
    input_tokens: int
    output_tokens: int
    compute_ms: int


def usage_breakdown(*, team: Team, group: str, days: int = 30) -> list[Breakdown]:
    """Usage of the last `days` days per API key ("key") or per session ("session")."""
    today = timezone.now().date()
    start, end = billing.day_bounds(today - timedelta(days=days - 1), today)
    rows = billing.usage_grouped(team=team, start=start, end=end, group=group)
    keys: dict[int, ApiKey] = {}
    if group == "key":
        keys = ApiKey.objects.filter(team=team, pk__in=[b for b, _ in rows if b]).in_bulk()
    result = []
    for bucket, totals in rows:
        if group == "key":
            key = keys.get(bucket) if bucket else None
            label = (key.name or key.display) if key else "Dashboard (no key)"
            ref = key.display if key else ""
        else:
            label, ref = (bucket or "—"), (bucket or "")
        result.append(
            Breakdown(label, ref, totals.cost_micros, totals.input_tokens, totals.output_tokens, totals.compute_ms)
        )
    return result


def ledger_page(*, team: Team, limit: int = 50) -> list[LedgerEntry]:
    return list(billing.ledger_list(team=team).select_related("api_key")[:limit])


def ledger_export(*, team: Team) -> QuerySet[LedgerEntry]:
    return billing.ledger_list(team=team).select_related("api_key").order_by("id")


def month_spend_micros(*, team: Team) -> int:
    return billing.usage_totals(team=team, start=billing.month_start(), end=timezone.now()).cost_micros
