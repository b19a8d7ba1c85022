"""Charges a session's usage to its team, incrementally and exactly once.

The cost of a session is a pure function of its counters and its event log: compute for the wall
time a browser was ready for it (idle time included, to the millisecond) plus its tokens, at the
price in effect when the session was created. Ready means from each activation (`started_at`,
then each `session_active` event) until the sweep finds its worker lost (`orphaned_at`, each
`instance:disconnected` event) or the session ends; time queued for a worker and time orphaned
are never charged. Each metering run computes that cumulative total, posts the difference from
what was already charged, and keys the ledger entry by the cumulative total; the entry and the
session's `cost_micros` move in one transaction under a lock on the session row, so a retry, a
concurrent run or a crash between runs can never charge twice nor lose a charge.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from billing.models import LedgerEntry
from billing.selectors import meter_interval_micros, price_at, team_balance_micros
from billing.services import ledger_post

from .models import BrowserSession, SessionEvent

_MS = timedelta(milliseconds=1)
ACTIVATED, LOST = "session_active", "instance:disconnected"


def session_compute_ms(session: BrowserSession, *, now: datetime | None = None) -> int:
    """Billable wall time in whole milliseconds: while a browser was ready for the session.

    A session hosted by one worker only (generation 1) was ready from `started_at` until it was
    orphaned, ended, or `now`. A session taken over has its periods in the event log: an
    activation opens one, a loss closes it (one query).
    """
    if session.started_at is None:
        return 0
    end = session.orphaned_at or session.ended_at or now or timezone.now()
    if session.generation <= 1:
        return max(0, (end - session.started_at) // _MS)
    ready_ms = 0
    since: datetime | None = session.started_at
    events = SessionEvent.objects.filter(
        session_id=session.pk, type__in=(ACTIVATED, LOST), created_at__gte=session.started_at
    ).order_by("id")
    for kind, at in events.values_list("type", "created_at"):
        if kind == LOST and since is not None:
            ready_ms, since = ready_ms + max(0, (at - since) // _MS), None
        elif kind == ACTIVATED and since is None:
            since = at
    if since is not None:
        ready_ms += max(0, (end - since) // _MS)
    return ready_ms


def session_cost_micros(session: BrowserSession, *, now: datetime | None = None) -> int:
    """What the session has cost so far, in micro-dollars (each meter rounded down)."""
    return _cost_micros(session, session_compute_ms(session, now=now))


def _cost_micros(session: BrowserSession, compute_ms: int) -> int:
    """The cost formula: the session's tokens and `compute_ms` at the price of its creation."""
    return price_at(session.created_at).cost_micros(
        input_tokens=session.input_tokens, output_tokens=session.output_tokens, compute_ms=compute_ms
    )


def session_meter(*, session_id: str, task_id: str = "") -> int:
    """Charge what the session has used since the last run; return what the team's balance
    holds beyond one metering interval for each of its live sessions (this one included). The
    runner ends the session when that is not positive: the balance must cover the next interval
    of every live session, as when a session is admitted (billing.services
    .balance_require_for_sessions), so the team's sessions together overdraw by at most about
    one interval (decision 8), however many run at once.

    Called every ENIGMA_METER_INTERVAL_S while the session lives, when it ends, and (with the
    finished task's id, recorded on the entry) when a task ends. The entry's idempotency key is
    `session:<id>:usage:<cumulative micros>`.
    """
    with transaction.atomic():
        session = BrowserSession.objects.select_for_update().get(pk=session_id)
        compute_ms = session_compute_ms(session)
        total = _cost_micros(session, compute_ms)
        delta = total - session.cost_micros
        if delta > 0:
            ledger_post(
                team=session.team_id,
                amount_micros=-delta,
                kind=LedgerEntry.Kind.USAGE,
                idempotency_key=f"session:{session.pk}:usage:{total}",
                description=f"Session {session.pk}",
                session_id=session.pk,
                task_id=task_id,
                api_key_id=session.api_key_id,
                input_tokens=session.input_tokens - session.charged_input_tokens,
                output_tokens=session.output_tokens - session.charged_output_tokens,
                compute_ms=compute_ms - session.charged_compute_ms,
            )
            BrowserSession.objects.filter(pk=session.pk).update(
                cost_micros=total,
                charged_input_tokens=session.input_tokens,
                charged_output_tokens=session.output_tokens,
                charged_compute_ms=compute_ms,
            )
        live = BrowserSession.objects.filter(team_id=session.team_id, state__in=BrowserSession.LIVE_STATES).count()
        return team_balance_micros(team=session.team_id) - live * meter_interval_micros()


def sessions_meter_ended(*, within: timedelta = timedelta(hours=1)) -> int:
    """Charge the last seconds of sessions that ended in the last `within` but were not charged
    up to their end (the worker died between ending and metering, or the sweep ended an orphan).
    Returns how many sessions were metered; safe to run any number of times, anywhere.
    """
    since = timezone.now() - within
    rows = BrowserSession.objects.filter(
        state__in=BrowserSession.ENDED_STATES,
        ended_at__gte=since,
    ).only(
        "pk",
        "team_id",
        "generation",
        "started_at",
        "orphaned_at",
        "ended_at",
        "charged_compute_ms",
        "input_tokens",
        "charged_input_tokens",
        "output_tokens",
        "charged_output_tokens",
    )
    metered = 0
    for session in rows.iterator():
        if (
            session.input_tokens > session.charged_input_tokens
            or session.output_tokens > session.charged_output_tokens
            or session_compute_ms(session) > session.charged_compute_ms
        ):
            session_meter(session_id=session.pk)
            metered += 1
    return metered
