"""Charges a session's usage to its team, incrementally and exactly once.

The cost of a session is a pure function of its counters: compute for the wall time since
creation (idle time included) plus its tokens. Each metering run computes that total, posts the
difference from what was already charged, and keys the ledger entry by the cumulative total, so
a retry or a crash between the two writes can never charge twice.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from billing.selectors import current_price, team_balance_micros
from billing.services import ledger_post

from .models import BrowserSession


def session_cost_micros(session: BrowserSession) -> int:
    price = current_price()
    end = session.ended_at or timezone.now()
    ms = max(0, int((end - session.created_at).total_seconds() * 1000))
    compute = ms * price.compute_per_minute_micros // 60_000
    tokens = (session.input_tokens * price.input_per_million_micros
              + session.output_tokens * price.output_per_million_micros) // 1_000_000
    return compute + tokens


def session_meter(*, session_id: str) -> int:
    """Charge what the session has used since the last run; returns the team's balance."""
    with transaction.atomic():
        session = BrowserSession.objects.select_for_update().get(pk=session_id)
        total = session_cost_micros(session)
        delta = total - session.cost_micros
        if delta > 0:
            end = session.ended_at or timezone.now()
            compute_ms = max(0, int((end - session.created_at).total_seconds() * 1000))
            ledger_post(
                team=session.team_id, amount_micros=-delta, kind="usage",
                idempotency_key=f"session:{session.pk}:usage:{total}",
                description=f"Session {session.pk}", session_id=session.pk,
                api_key_id=session.api_key_id,
                input_tokens=session.input_tokens - session.charged_input_tokens,
                output_tokens=session.output_tokens - session.charged_output_tokens,
                compute_ms=compute_ms - session.charged_compute_ms,
            )
            BrowserSession.objects.filter(pk=session.pk).update(
                cost_micros=total, charged_input_tokens=session.input_tokens,
                charged_output_tokens=session.output_tokens, charged_compute_ms=compute_ms)
        return team_balance_micros(team=session.team_id)
