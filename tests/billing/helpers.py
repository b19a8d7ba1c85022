"""Helpers for the billing tests: signed Stripe deliveries, setting a team balance."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from typing import Any

import pytest
from django.conf import settings


def sign(payload: bytes, *, secret: str | None = None, timestamp: int | None = None) -> str:
    """A Stripe-Signature header for `payload`, as Stripe computes it."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    secret = settings.STRIPE_WEBHOOK_SECRET if secret is None else secret
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def intent_event(
    event_id: str,
    intent_id: str,
    amount_cents: int,
    event_type: str = "payment_intent.succeeded",
    *,
    received_cents: int | None = None,
    currency: str = "usd",
) -> bytes:
    """The body of a Stripe event about a PaymentIntent, as a webhook delivers it."""
    return json.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": event_type,
            "api_version": "2024-06-20",
            "created": int(time.time()),
            "livemode": False,
            "data": {
                "object": {
                    "id": intent_id,
                    "object": "payment_intent",
                    "amount": amount_cents,
                    "amount_received": amount_cents if received_cents is None else received_cents,
                    "currency": currency,
                    "status": "succeeded",
                    "metadata": {},
                }
            },
        }
    ).encode()


def stripe_configured() -> bool:
    return bool(os.environ.get("STRIPE_API_BASE"))


needs_localstripe = pytest.mark.skipif(
    not stripe_configured(), reason="run through scripts/test.sh (starts localstripe)"
)


def set_balance(team: Any, micros: int) -> None:
    """Bring the team's balance to `micros` with one ledger adjustment."""
    from billing.selectors import team_balance_micros
    from billing.services import ledger_post

    delta = micros - team_balance_micros(team=team)
    if delta:
        ledger_post(
            team=team,
            amount_micros=delta,
            kind="adjustment",
            idempotency_key=f"test-set-balance:{team.pk}:{time.time_ns()}",
            description="test: set balance",
        )
