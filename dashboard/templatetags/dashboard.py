"""Display filters: money from micro-dollars, durations, token counts, state badges."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from django import template
from django.utils import timezone

from billing.money import MICROS_PER_USD, format_usd

register = template.Library()

STATE_LABELS = {
    "pending": ("Starting", "info"),
    "active": ("Live", "live"),
    "orphaned": ("Reconnecting", "warn"),
    "completed": ("Completed", "ok"),
    "terminated": ("Terminated", "muted"),
    "failed": ("Failed", "bad"),
    # task states
    "started": ("Queued", "muted"),
    "running": ("Running", "live"),
    "guardrail_trigger": ("Needs input", "warn"),
    "task_completed": ("Completed", "ok"),
    "stopped": ("Stopped", "muted"),
}


@register.filter
def usd(micros: int | None) -> str:
    """$1,234.56; amounts under a cent keep four decimals so small charges do not read $0.00."""
    micros = int(micros or 0)
    if micros and abs(micros) < 10_000:
        return f"{'-' if micros < 0 else ''}${Decimal(abs(micros)) / MICROS_PER_USD:.4f}"
    return format_usd(micros) if micros >= 0 else "-" + format_usd(-micros)


@register.filter
def balance(micros: int | None) -> str:
    """A balance in whole cents, rounded toward zero, so spending never reads as no change."""
    micros = int(micros or 0)
    cents = abs(micros) // 10_000
    return ("-" if micros < 0 and cents else "") + format_usd(cents * 10_000)


@register.filter
def signed_usd(micros: int | None) -> str:
    micros = int(micros or 0)
    return ("+" if micros > 0 else "") + usd(micros)


@register.filter
def seconds(value: float | int | None) -> str:
    """1h 02m, 3m 05s, 12.4s."""
    total = float(value or 0)
    if total < 60:
        return f"{total:.1f}s"
    minutes, secs = divmod(int(total), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


@register.filter
def ms(value: int | None) -> str:
    return seconds((value or 0) / 1000)


@register.filter
def since(start: datetime | None, end: datetime | None = None) -> str:
    """Elapsed time from `start` to `end` (or now)."""
    if start is None:
        return "—"
    return seconds(((end or timezone.now()) - start).total_seconds())


@register.filter
def num(value: Any) -> str:
    return f"{int(value or 0):,}"


@register.filter
def state_label(state: str) -> str:
    return STATE_LABELS.get(state, (state.replace("_", " ").capitalize(), ""))[0]


@register.filter
def state_tone(state: str) -> str:
    return STATE_LABELS.get(state, ("", "muted"))[1]
