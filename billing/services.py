"""Ledger writes. A balance moves only here, under a row lock, with a unique idempotency key."""

from __future__ import annotations

from django.db import IntegrityError, transaction

from accounts.models import Team
from enigma_site.errors import ApiError

from .models import LedgerEntry


def ledger_post(
    *,
    team: Team | int,
    amount_micros: int,
    kind: str,
    idempotency_key: str,
    description: str = "",
    **fields: object,
) -> LedgerEntry | None:
    """Append an entry and move the cached balance; None when the key was already posted."""
    team_id = team if isinstance(team, int) else team.pk
    if LedgerEntry.objects.filter(idempotency_key=idempotency_key).exists():
        return None
    try:
        with transaction.atomic():
            locked = Team.objects.select_for_update().get(pk=team_id)
            locked.balance_micros += amount_micros
            entry = LedgerEntry.objects.create(
                team=locked, kind=kind, amount_micros=amount_micros,
                balance_after_micros=locked.balance_micros, idempotency_key=idempotency_key,
                description=description[:300], **fields,
            )
            Team.objects.filter(pk=team_id).update(balance_micros=locked.balance_micros)
    except IntegrityError:
        # A concurrent post of the same key won; the unique constraint is the last guard.
        if LedgerEntry.objects.filter(idempotency_key=idempotency_key).exists():
            return None
        raise
    return entry


class InsufficientBalance(ApiError):
    status_code = 402
    code = "INSUFFICIENT_BALANCE"
    default_message = "Insufficient balance."


def balance_require_positive(*, team: Team | int) -> int:
    """Return the balance, or raise 402 with it when there is nothing left to spend."""
    from .money import micros_to_usd
    from .selectors import team_balance_micros

    balance = team_balance_micros(team=team)
    if balance <= 0:
        raise InsufficientBalance(
            f"Insufficient balance (${micros_to_usd(balance):.2f} remaining). Top up to continue.",
            details={"balance": micros_to_usd(balance)},
            extra={"balance": micros_to_usd(balance)},
        )
    return balance
