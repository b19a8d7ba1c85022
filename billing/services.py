"""Billing writes. A balance moves only in ledger_post, under a row lock on the team, with a
unique idempotency key per entry, so the database is the last guard against double posting."""

from __future__ import annotations

import json
import logging
from decimal import Decimal, InvalidOperation
from typing import Any

import stripe
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import Team, User
from accounts.services import PermissionDenied
from enigma_site.errors import ApiError, InvalidParameter

from .models import LedgerEntry, StripeEvent, TopUp
from .money import cents_to_micros, micros_to_usd, usd_text
from .selectors import can_top_up, meter_interval_micros, team_balance_micros
from .stripe_client import stripe_client

logger = logging.getLogger(__name__)


class InsufficientBalance(ApiError):
    status_code = 402
    code = "INSUFFICIENT_BALANCE"
    default_message = "Insufficient balance."


class PaymentProviderError(ApiError):
    status_code = 502
    code = "PAYMENT_FAILED"
    default_message = "The payment provider could not start the payment"


class WebhookSignatureInvalid(ApiError):
    status_code = 400
    code = "INVALID_SIGNATURE"
    default_message = "Invalid webhook signature"


# ----- the ledger ------------------------------------------------------------------------------


def ledger_post(
    *,
    team: Team | int,
    amount_micros: int,
    kind: str,
    idempotency_key: str,
    description: str = "",
    **fields: Any,
) -> LedgerEntry | None:
    """Append an entry and move the team's cached balance by `amount_micros` (credits positive,
    charges negative); return the entry, or None when `idempotency_key` was already posted.

    Runs in its own savepoint, so it may be called inside a caller's transaction. Raises
    ValueError for an unknown kind or a non-integer amount.
    """
    if kind not in LedgerEntry.Kind.values:
        raise ValueError(f"unknown ledger entry kind {kind!r}")
    if not isinstance(amount_micros, int) or isinstance(amount_micros, bool):
        raise ValueError("amount_micros must be an int")
    team_id = team if isinstance(team, int) else team.pk
    if LedgerEntry.objects.filter(idempotency_key=idempotency_key).exists():
        return None
    try:
        with transaction.atomic():
            locked = Team.objects.select_for_update().only("pk", "balance_micros").get(pk=team_id)
            balance = locked.balance_micros + amount_micros
            entry = LedgerEntry.objects.create(
                team_id=team_id,
                kind=kind,
                amount_micros=amount_micros,
                balance_after_micros=balance,
                idempotency_key=idempotency_key,
                description=description[:300],
                **fields,
            )
            Team.objects.filter(pk=team_id).update(balance_micros=balance)
    except IntegrityError:
        # A concurrent post of the same key won; the unique constraint is the last guard.
        if LedgerEntry.objects.filter(idempotency_key=idempotency_key).exists():
            return None
        raise
    return entry


@transaction.atomic
def adjustment_post(
    *, team: Team | int, amount_micros: int, reason: str, user: User | None, idempotency_key: str
) -> LedgerEntry | None:
    """Post an operator's correction (positive credits, negative debits) with its reason.

    Returns None when the same key (one per admin form) was already posted. Raises ValueError for
    a zero amount or an empty reason.
    """
    if amount_micros == 0:
        raise ValueError("An adjustment must move money")
    if not reason.strip():
        raise ValueError("An adjustment needs a reason")
    return ledger_post(
        team=team,
        amount_micros=amount_micros,
        kind=LedgerEntry.Kind.ADJUSTMENT,
        idempotency_key=f"adjustment:{idempotency_key}",
        description=reason.strip(),
        created_by=user,
    )


def balance_require_positive(*, team: Team | int) -> int:
    """Return the balance, or raise 402 with it when there is nothing left to spend."""
    balance = team_balance_micros(team=team)
    if balance <= 0:
        raise InsufficientBalance(
            f"Insufficient balance (${micros_to_usd(balance):.2f} remaining). Top up to continue.",
            details={"balance": micros_to_usd(balance)},
            extra={"balance": micros_to_usd(balance)},
        )
    return balance


def balance_require_for_sessions(*, team: Team | int, sessions: int, balance: int | None = None) -> int:
    """Return the balance, or raise 402 unless it is positive and covers one metering interval
    for each of `sessions` live sessions of the team (the one about to start included).

    The same rule ends running sessions (sessions_app.metering.session_meter), so all of a
    team's sessions together run at most about one interval below zero (decision 8). `balance`:
    the team's balance_micros as just read (in the caller's lock), else it is read now.
    """
    if balance is None:
        balance = team_balance_micros(team=team)
    required = sessions * meter_interval_micros()
    if balance <= 0 or balance < required:
        raise InsufficientBalance(
            f"Insufficient balance ({usd_text(balance)} remaining, {usd_text(required)} required: "
            f"one metering interval for each live session of the team, this one included). "
            f"Top up to continue.",
            details={"balance": micros_to_usd(balance), "required": micros_to_usd(required)},
            extra={"balance": micros_to_usd(balance)},
        )
    return balance


# ----- top-ups with Stripe ---------------------------------------------------------------------


def topup_bounds_usd() -> tuple[Decimal, Decimal]:
    """The smallest and largest top-up a user may pick (ENIGMA_TOPUP_MIN_USD / MAX_USD)."""
    return (Decimal(str(settings.ENIGMA_TOPUP_MIN_USD)), Decimal(str(settings.ENIGMA_TOPUP_MAX_USD)))


def _topup_cents(amount_usd: Decimal | int | float | str) -> int:
    """Whole cents for a top-up amount, or raise InvalidParameter('amount')."""
    try:
        amount = Decimal(str(amount_usd))
    except InvalidOperation:
        raise InvalidParameter("amount", "Invalid parameter 'amount': must be a number") from None
    low, high = topup_bounds_usd()
    if not amount.is_finite() or amount < low or amount > high:
        raise InvalidParameter(
            "amount",
            f"Invalid parameter 'amount': must be between ${low:.2f} and ${high:.2f}",
            min=float(low),
            max=float(high),
        )
    cents = amount * 100
    if cents != cents.to_integral_value():
        raise InvalidParameter("amount", "Invalid parameter 'amount': at most two decimals")
    return int(cents)


def topup_create(*, team: Team, user: User, amount_usd: Decimal | int | float | str) -> tuple[str, str]:
    """Start a top-up: record it and create its Stripe PaymentIntent; return the intent's id and
    client secret, for Stripe.js to confirm in the browser. The team is credited later, once, by
    the `payment_intent.succeeded` webhook.

    Raises PermissionDenied (403) unless the user is an owner or admin of the team,
    InvalidParameter (400, 'amount') outside the configured bounds, StripeNotConfigured (503)
    and PaymentProviderError (502) when Stripe fails.
    """
    if not can_top_up(team=team, user=user):
        raise PermissionDenied("Only owners and admins of the team can top up")
    cents = _topup_cents(amount_usd)
    client = stripe_client()
    topup = TopUp.objects.create(team=team, user=user, amount_cents=cents)
    try:
        # No payment method list: this API version has no `payment_method_types` (Stripe refuses
        # it), and the dashboard confirms with the card Element, which the default methods include.
        intent = client.v1.payment_intents.create(
            params={
                "amount": cents,
                "currency": "usd",
                "metadata": {"topup_id": str(topup.pk), "team_id": str(team.pk), "user_id": str(user.pk)},
            }
        )
    except stripe.StripeError as exc:
        logger.warning("Stripe refused top-up %s: %s", topup.pk, exc)
        TopUp.objects.filter(pk=topup.pk).update(status=TopUp.Status.FAILED)
        raise PaymentProviderError() from exc
    TopUp.objects.filter(pk=topup.pk).update(payment_intent_id=intent.id)
    return intent.id, str(intent.client_secret)


def _topup_for_intent(intent: dict[str, Any]) -> TopUp | None:
    """Our top-up of a PaymentIntent, locked; by intent id, else by the id in its metadata."""
    query = TopUp.objects.select_for_update()
    topup = query.filter(payment_intent_id=intent["id"]).first()
    if topup is None:
        topup_id = str((intent.get("metadata") or {}).get("topup_id", ""))
        if topup_id.isdigit():
            topup = query.filter(pk=int(topup_id), payment_intent_id__isnull=True).first()
    return topup


def topup_credit(*, intent: dict[str, Any]) -> LedgerEntry | None:
    """Credit a succeeded PaymentIntent to its team exactly once (key `stripe:pi:<id>`), for the
    amount and currency of our top-up record and only when Stripe reports the same ones.

    Returns the new entry, or None when it was already credited or when the amount received or
    the currency differs from the record: then nothing is credited, the top-up is flagged with
    the reason for an operator, and a warning is logged. Raises ValueError for an intent we did
    not create.
    """
    with transaction.atomic():
        topup = _topup_for_intent(intent)
        if topup is None:
            raise ValueError(f"No top-up for PaymentIntent {intent['id']}")
        # Stripe always sets amount_received on a succeeded intent; localstripe leaves it out.
        cents = intent["amount_received"] if "amount_received" in intent else intent.get("amount")
        currency = str(intent.get("currency", "")).lower()
        if cents != topup.amount_cents or intent.get("amount") != topup.amount_cents or currency != topup.currency:
            if topup.status != TopUp.Status.SUCCEEDED:
                reason = (
                    f"PaymentIntent {intent['id']} reports {cents} {currency} received (amount "
                    f"{intent.get('amount')}) for a top-up of {topup.amount_cents} {topup.currency}"
                )
                logger.warning("Not crediting top-up %s: %s", topup.pk, reason)
                TopUp.objects.filter(pk=topup.pk).update(
                    status=TopUp.Status.FLAGGED, flag_reason=reason, payment_intent_id=intent["id"]
                )
            return None
        entry = ledger_post(
            team=topup.team_id,
            amount_micros=cents_to_micros(topup.amount_cents),
            kind=LedgerEntry.Kind.TOPUP,
            idempotency_key=f"stripe:pi:{intent['id']}",
            description=f"Top-up ({intent['id']})",
            created_by_id=topup.user_id,
        )
        if entry is not None:
            TopUp.objects.filter(pk=topup.pk).update(
                status=TopUp.Status.SUCCEEDED,
                ledger_entry=entry,
                credited_at=timezone.now(),
                payment_intent_id=intent["id"],
            )
        return entry


def topup_fail(*, intent: dict[str, Any]) -> None:
    """Mark the top-up of a failed PaymentIntent failed (never one already credited)."""
    TopUp.objects.filter(payment_intent_id=intent["id"]).exclude(status=TopUp.Status.SUCCEEDED).update(
        status=TopUp.Status.FAILED
    )


# ----- Stripe webhooks -------------------------------------------------------------------------


def stripe_event_record(*, payload: bytes, signature: str) -> StripeEvent:
    """Verify a webhook delivery with STRIPE_WEBHOOK_SECRET and store its event once per Stripe
    event id (a redelivery counts a delivery on the stored row); return the stored event.

    Raises WebhookSignatureInvalid for a missing, forged or stale (over 5 minutes) signature.
    """
    secret = settings.STRIPE_WEBHOOK_SECRET
    if not secret:
        raise WebhookSignatureInvalid("Webhook secret is not configured")
    try:
        event = stripe.Webhook.construct_event(payload, signature, secret)
    except stripe.SignatureVerificationError as exc:
        raise WebhookSignatureInvalid(f"Invalid webhook signature: {exc.user_message}") from None
    except ValueError:
        raise WebhookSignatureInvalid("Invalid webhook payload") from None
    try:
        with transaction.atomic():
            return StripeEvent.objects.create(stripe_id=event.id, type=event.type, payload=json.loads(payload))
    except IntegrityError:
        StripeEvent.objects.filter(stripe_id=event.id).update(deliveries=F("deliveries") + 1)
        return StripeEvent.objects.get(stripe_id=event.id)


def _handle_payment_intent_succeeded(obj: dict[str, Any]) -> None:
    topup_credit(intent=obj)


def _handle_payment_intent_failed(obj: dict[str, Any]) -> None:
    topup_fail(intent=obj)


_HANDLERS = {
    "payment_intent.succeeded": _handle_payment_intent_succeeded,
    "payment_intent.payment_failed": _handle_payment_intent_failed,
}


@transaction.atomic
def stripe_event_process(*, event: StripeEvent) -> StripeEvent:
    """Apply a stored event once: credit succeeded top-ups, mark failed ones, ignore other types.

    Concurrent calls for one event are serialised by a row lock; an event already processed or
    ignored is returned unchanged. Exceptions of the handler roll back and propagate (the caller
    records them with stripe_event_mark_failed).
    """
    locked = StripeEvent.objects.select_for_update().get(pk=event.pk)
    if locked.status in (StripeEvent.Status.PROCESSED, StripeEvent.Status.IGNORED):
        return locked
    handler = _HANDLERS.get(locked.type)
    if handler is None:
        locked.status = StripeEvent.Status.IGNORED
    else:
        handler(locked.payload["data"]["object"])
        locked.status = StripeEvent.Status.PROCESSED
    locked.error = ""
    locked.processed_at = timezone.now()
    locked.save(update_fields=["status", "error", "processed_at"])
    return locked


def stripe_event_mark_failed(*, event: StripeEvent, error: str) -> None:
    """Record why processing failed (unless another delivery processed it meanwhile)."""
    StripeEvent.objects.filter(pk=event.pk).exclude(status=StripeEvent.Status.PROCESSED).update(
        status=StripeEvent.Status.FAILED, error=error[:2000]
    )
