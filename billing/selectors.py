"""Reads of balances, prices, usage and the ledger; every team read takes the team first."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, F, OuterRef, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from accounts.memberships import is_team_manager
from accounts.models import Team, User

from .models import LedgerEntry, Price, TopUp

USAGE_GROUPS = ("day", "key", "session")


def _team_id(team: Team | int) -> int:
    return team if isinstance(team, int) else team.pk


def team_balance_micros(*, team: Team | int) -> int:
    """The team's cached balance (the sum of its ledger entries, see billing_reconcile)."""
    return Team.objects.values_list("balance_micros", flat=True).get(pk=_team_id(team))


def price_at(when: datetime) -> Price:
    """The price in effect at `when`; the contract defaults (unsaved) when none was set."""
    price = Price.objects.filter(effective_from__lte=when).first()
    return price or Price(effective_from=when)


def current_price() -> Price:
    """The newest price in effect now; the contract defaults when none was set in admin."""
    return price_at(timezone.now())


def meter_interval_micros() -> int:
    """Compute cost of one metering interval (ENIGMA_METER_INTERVAL_S) at the current price:
    what one session may spend before the meter next looks at the team's balance."""
    return current_price().compute_cost_micros(compute_ms=int(settings.ENIGMA_METER_INTERVAL_S * 1000))


def can_top_up(*, team: Team | int, user: User) -> bool:
    """Owners and admins of the team top up; members only see usage."""
    return is_team_manager(team=team, user=user)


def ledger_list(*, team: Team | int) -> QuerySet[LedgerEntry]:
    """The team's ledger entries, newest first."""
    return LedgerEntry.objects.filter(team_id=_team_id(team)).order_by("-id")


def topup_list(*, team: Team | int) -> QuerySet[TopUp]:
    """The team's top-ups, newest first."""
    return TopUp.objects.filter(team_id=_team_id(team)).order_by("-id")


def month_start(now: datetime | None = None) -> datetime:
    """Midnight UTC of the first day of the current month."""
    now = now or timezone.now()
    return now.astimezone(timezone.get_default_timezone()).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def day_bounds(start: date, end: date) -> tuple[datetime, datetime]:
    """[start 00:00, day after end 00:00) in the default (UTC) time zone."""
    tz = timezone.get_default_timezone()
    return (
        datetime.combine(start, time.min, tzinfo=tz),
        datetime.combine(end + timedelta(days=1), time.min, tzinfo=tz),
    )


@dataclass(frozen=True)
class UsageTotals:
    cost_micros: int
    input_tokens: int
    output_tokens: int
    compute_ms: int
    entries: int


def _usage_aggregates() -> dict[str, Any]:
    return {
        "charged": Coalesce(Sum("amount_micros"), 0),
        "input_tokens_sum": Coalesce(Sum("input_tokens"), 0),
        "output_tokens_sum": Coalesce(Sum("output_tokens"), 0),
        "compute_ms_sum": Coalesce(Sum("compute_ms"), 0),
        "entries": Count("id"),
    }


def _totals(row: Mapping[str, Any]) -> UsageTotals:
    return UsageTotals(
        cost_micros=-row["charged"],
        input_tokens=row["input_tokens_sum"],
        output_tokens=row["output_tokens_sum"],
        compute_ms=row["compute_ms_sum"],
        entries=row["entries"],
    )


def _usage_entries(team: Team | int, start: datetime, end: datetime) -> QuerySet[LedgerEntry]:
    return LedgerEntry.objects.filter(
        team_id=_team_id(team), kind=LedgerEntry.Kind.USAGE, created_at__gte=start, created_at__lt=end
    )


def usage_totals(*, team: Team | int, start: datetime, end: datetime) -> UsageTotals:
    """What usage cost the team in [start, end), from its ledger."""
    return _totals(_usage_entries(team, start, end).aggregate(**_usage_aggregates()))


def usage_grouped(*, team: Team | int, start: datetime, end: datetime, group: str) -> list[tuple[Any, UsageTotals]]:
    """Usage in [start, end) per day (a date), per API key (its id or None) or per session id.

    Raises ValueError for an unknown group.
    """
    if group not in USAGE_GROUPS:
        raise ValueError(f"unknown group {group!r}")
    query = _usage_entries(team, start, end)
    rows: Iterable[Mapping[str, Any]]
    if group == "day":
        rows = (
            query.annotate(bucket=TruncDate("created_at"))
            .values("bucket")
            .annotate(**_usage_aggregates())
            .order_by("bucket")
        )
    else:
        field = "api_key_id" if group == "key" else "session_id"
        rows = (
            query.values(bucket=F(field)).annotate(**_usage_aggregates()).order_by(F("charged"), "bucket")
        )  # most expensive first (usage is negative)
    return [(row["bucket"], _totals(row)) for row in rows]


@dataclass(frozen=True)
class Mismatch:
    team_id: int
    cached_micros: int
    ledger_micros: int
    last_balance_after_micros: int | None


def ledger_mismatches() -> list[Mismatch]:
    """Teams whose cached balance differs from the sum of their entries or from the balance
    recorded on their latest entry. Empty when the books balance."""
    latest = LedgerEntry.objects.filter(team_id=OuterRef("pk")).order_by("-id")
    total = (
        LedgerEntry.objects.filter(team_id=OuterRef("pk"))
        .values("team_id")
        .annotate(total=Sum("amount_micros"))
        .values("total")
    )
    rows = (
        Team.objects.order_by("pk")
        .annotate(
            ledger_sum=Coalesce(Subquery(total), 0), last_after=Subquery(latest.values("balance_after_micros")[:1])
        )
        .values_list("pk", "balance_micros", "ledger_sum", "last_after")
    )
    return [
        Mismatch(team_id=team_id, cached_micros=cached, ledger_micros=ledger, last_balance_after_micros=last)
        for team_id, cached, ledger, last in rows
        if cached != ledger or (last is not None and last != ledger)
    ]
