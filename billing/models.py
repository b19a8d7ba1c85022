"""Prices and the append-only ledger, in integer micro-dollars (1 USD = 1_000_000)."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Price(models.Model):
    """Prices effective from a moment; the newest one not in the future applies."""

    effective_from = models.DateTimeField(unique=True)
    input_per_million_micros = models.BigIntegerField(default=600_000)  # $0.60 / 1M input tokens
    output_per_million_micros = models.BigIntegerField(default=2_700_000)  # $2.70 / 1M output tokens
    compute_per_minute_micros = models.BigIntegerField(default=20_000)  # $0.02 / minute
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-effective_from"]

    def __str__(self) -> str:
        return f"prices from {self.effective_from:%Y-%m-%d %H:%M}"


class LedgerEntry(models.Model):
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
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL,
                                   null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "ledger entries"

    def __str__(self) -> str:
        return f"{self.kind} {self.amount_micros} ({self.idempotency_key})"
