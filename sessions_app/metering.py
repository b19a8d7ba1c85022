"""Charges a session's usage to its team, incrementally and exactly once.

The cost of a session is a pure function of its counters: compute for the wall time since
creation (idle time included, to the millisecond) plus its tokens, at the price in effect when the
session was created. Each metering run computes that cumulative total, posts the difference from
what was already charged, and keys the ledger entry by the cumulative total; the entry and the
session's `cost_micros` move in one transaction under a lock on the session row, so a retry, a
concurrent run or a crash between runs can never charge twice nor lose a charge.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from billing.models import LedgerEntry
from billing.selectors import price_at, team_balance_micros
from billing.services import ledger_post

from .models import BrowserSession

_MS = timedelta(milliseconds=1)


def session_compute_ms(session: BrowserSession, *, now: datetime | None = None) -> int:
    """Wall time from creation to the end (or `now` while live), in whole milliseconds."""
    end = session.ended_at or now or timezone.now()
    return max(0, (end - session.created_at) // _MS)


def session_cost_micros(session: BrowserSession, *, now: datetime | None = None) -> int:
    """What the session has cost so far, in micro-dollars (each meter rounded down)."""
    return price_at(session.created_at).cost_micros(
        input_tokens=session.input_tokens, output_tokens=session.output_tokens,
        compute_ms=session_compute_ms(session, now=now))


def session_meter(*, session_id: str, task_id: str = "") -> int:
    """Charge what the session has used since the last run and return the team's balance.

    Called every ENIGMA_METER_INTERVAL_S while the session lives, when it ends, and (with the
    finished task's id, recorded on the entry) when a task ends. The entry's idempotency key is
    `session:<id>:usage:<cumulative micros>`.
    """
    with transaction.atomic():
        session = BrowserSession.objects.select_for_update().get(pk=session_id)
        compute_ms = session_compute_ms(session)
        total = price_at(session.created_at).cost_micros(
            input_tokens=session.input_tokens, output_tokens=session.output_tokens,
            compute_ms=compute_ms)
        delta = total - session.cost_micros
        if delta > 0:
            ledger_post(
                team=session.team_id, amount_micros=-delta, kind=LedgerEntry.Kind.USAGE,
                idempotency_key=f"session:{session.pk}:usage:{total}",
                description=f"Session {session.pk}", session_id=session.pk, task_id=task_id,
                api_key_id=session.api_key_id,
                input_tokens=session.input_tokens - session.charged_input_tokens,
                output_tokens=session.output_tokens - session.charged_output_tokens,
                compute_ms=compute_ms - session.charged_compute_ms,
            )
            BrowserSession.objects.filter(pk=session.pk).update(
                cost_micros=total, charged_input_tokens=session.input_tokens,
                charged_output_tokens=session.output_tokens, charged_compute_ms=compute_ms)
        return team_balance_micros(team=session.team_id)


def sessions_meter_ended(*, within: timedelta = timedelta(hours=1)) -> int:
    """Charge the last seconds of sessions that ended in the last `within` but were not charged
    up to their end (the worker died between ending and metering, or the sweep ended an orphan).
    Returns how many sessions were metered; safe to run any number of times, anywhere.
    """
    since = timezone.now() - within
    rows = BrowserSession.objects.filter(
        state__in=BrowserSession.ENDED_STATES, ended_at__gte=since,
    ).values_list("pk", "created_at", "ended_at", "charged_compute_ms", "input_tokens",
                  "charged_input_tokens", "output_tokens", "charged_output_tokens")
    metered = 0
    for pk, created, ended, charged_ms, tin, charged_in, tout, charged_out in rows.iterator():
        if (ended - created) // _MS > charged_ms or tin > charged_in or tout > charged_out:
            session_meter(session_id=pk)
            metered += 1
    return metered
