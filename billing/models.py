"""Prices, the append-only ledger, Stripe top-ups and Stripe events.

Money is integer micro-dollars (1 USD = 1_000_000) in `*_micros` BigIntegerFields; see money.py.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models

TOKENS_PER_PRICE_UNIT = 1_000_000
MS_PER_MINUTE = 60_000


class Price(models.Model):
    """Prices effective from a moment; the newest one not after a given moment applies.

    A session is charged at the price in effect when it was created, so an edit in admin never
    re-prices usage already under way.
    """

    effective_from = models.DateTimeField(unique=True)
    input_per_million_micros = models.BigIntegerField(
        default=600_000, help_text="Micro-dollars per 1M input tokens ($0.60 = 600000)."
    )
    output_per_million_micros = models.BigIntegerField(
        default=2_700_000, help_text="Micro-dollars per 1M output tokens ($2.70 = 2700000)."
    )
    compute_per_minute_micros = models.BigIntegerField(
        default=20_000,
        help_text="Micro-dollars per minute of session wall time, billed per millisecond ($0.02/min = 20000).",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-effective_from"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(
                    input_per_million_micros__gte=0, output_per_million_micros__gte=0, compute_per_minute_micros__gte=0
                ),
                name="price_not_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"prices from {self.effective_from:%Y-%m-%d %H:%M}"

    def token_cost_micros(self, *, input_tokens: int, output_tokens: int) -> int:
        """Cost of tokens, rounded down to the micro-dollar."""
        return (
            input_tokens * self.input_per_million_micros + output_tokens * self.output_per_million_micros
        ) // TOKENS_PER_PRICE_UNIT

    def compute_cost_micros(self, *, compute_ms: int) -> int:
        """Cost of wall time in milliseconds, rounded down to the micro-dollar."""
        return compute_ms * self.compute_per_minute_micros // MS_PER_MINUTE

    def cost_micros(self, *, input_tokens: int, output_tokens: int, compute_ms: int) -> int:
        """Total cost; each meter is rounded down on its own, so a cumulative total is exact."""
        return self.token_cost_micros(
            input_tokens=input_tokens, output_tokens=output_tokens
        ) + self.compute_cost_micros(compute_ms=compute_ms)


class LedgerEntry(models.Model):
    """One movement of a team's money; never updated or deleted (admin is read-only)."""

    class Kind(models.TextChoices):
        TOPUP = "topup"
        GRANT = "grant"
        USAGE = "usage"
        ADJUSTMENT = "adjustment"

    team = models.ForeignKey("accounts.Team", on_delete=models.PROTECT, related_name="ledger")
    kind = models.CharField(max_length=12, choices=Kind.choices)
    amount_micros = models.BigIntegerField()  # credits positive, charges negative
    balance_after_micros = models.BigIntegerField()
    idempotency_key = models.CharField(max_length=200, unique=True)
    description = models.CharField(max_length=300, blank=True)
    session_id = models.CharField(max_length=64, blank=True, db_index=True)
    task_id = models.CharField(max_length=64, blank=True)
    api_key = models.ForeignKey("accounts.ApiKey", on_delete=models.SET_NULL, null=True, blank=True)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    compute_ms = models.BigIntegerField(default=0)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "ledger entries"
        indexes = [models.Index(fields=["team", "kind", "created_at"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount_micros} ({self.idempotency_key})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Insert only: an entry, once written, is never changed (post a correction instead)."""
        if not self._state.adding:
            raise ValueError("Ledger entries are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        """Refused: the ledger is append-only."""
        raise ValueError("Ledger entries are append-only")


class TopUp(models.Model):
    """A top-up a team member started: one Stripe PaymentIntent, credited once on success."""

    class Status(models.TextChoices):
        CREATED = "created"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        # Stripe reported an amount or currency other than this record's: not credited,
        # left for an operator (flag_reason says what differed).
        FLAGGED = "flagged"

    team = models.ForeignKey("accounts.Team", on_delete=models.PROTECT, related_name="topups")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    amount_cents = models.PositiveBigIntegerField()
    currency = models.CharField(max_length=3, default="usd")
    payment_intent_id = models.CharField(max_length=255, unique=True, null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.CREATED)
    ledger_entry = models.OneToOneField(
        LedgerEntry, on_delete=models.PROTECT, null=True, blank=True, related_name="topup"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    credited_at = models.DateTimeField(null=True, blank=True)
    flag_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"top-up {self.pk} of {self.amount_cents} cents ({self.status})"


class StripeEvent(models.Model):
    """A verified Stripe webhook event, stored once per Stripe event id."""

    class Status(models.TextChoices):
        RECEIVED = "received"
        PROCESSED = "processed"
        IGNORED = "ignored"
        FAILED = "failed"

    stripe_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=100)
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RECEIVED, db_index=True)
    error = models.TextField(blank=True)
    deliveries = models.PositiveIntegerField(default=1)
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.type} {self.stripe_id} ({self.status})"
