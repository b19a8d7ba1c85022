"""The one place that converts micro-dollars for display and for Stripe, rounding explicitly."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

MICROS_PER_USD = 1_000_000


def micros_to_usd(micros: int) -> float:
    """USD number for JSON responses (6 decimal places, exact for any micro amount)."""
    return float(Decimal(micros) / MICROS_PER_USD)


def usd_to_micros(usd: float | str | Decimal) -> int:
    return int((Decimal(str(usd)) * MICROS_PER_USD).to_integral_value(rounding=ROUND_HALF_EVEN))


def cents_to_micros(cents: int) -> int:
    return cents * 10_000


def format_usd(micros: int) -> str:
    return f"${Decimal(micros) / MICROS_PER_USD:,.2f}"


def usd_text(micros: int) -> str:
    """Dollars for a message: cents, or four decimals for a nonzero amount under a cent."""
    if micros and abs(micros) < 10_000:
        return f"${Decimal(micros) / MICROS_PER_USD:.4f}"
    return f"${Decimal(micros) / MICROS_PER_USD:.2f}"
