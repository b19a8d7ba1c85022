"""Celery tasks: thin adapters around billing services."""

from __future__ import annotations

import logging

from celery import shared_task

logger = logging.getLogger(__name__)


@shared_task(name="billing.meter_ended_sessions", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def meter_ended_sessions() -> int:
    """Charge sessions that ended without their final charge; safe to run twice."""
    from sessions_app.metering import sessions_meter_ended

    return sessions_meter_ended()


@shared_task(name="billing.reconcile", acks_late=True, ignore_result=True)
def reconcile() -> int:
    """Log every team whose balance differs from the sum of its entries; return their count."""
    from .selectors import ledger_mismatches

    mismatches = ledger_mismatches()
    for m in mismatches:
        logger.error(
            "ledger mismatch: team %s cached %s, entries %s, latest entry %s",
            m.team_id,
            m.cached_micros,
            m.ledger_micros,
            m.last_balance_after_micros,
        )
    return len(mismatches)
