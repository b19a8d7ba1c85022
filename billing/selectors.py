"""Reads of balances and prices."""

from __future__ import annotations

from django.utils import timezone

from accounts.models import Team

from .models import Price


def team_balance_micros(*, team: Team | int) -> int:
    team_id = team if isinstance(team, int) else team.pk
    return Team.objects.values_list("balance_micros", flat=True).get(pk=team_id)


def current_price() -> Price:
    """The newest price in effect; the contract defaults when none was set in admin."""
    price = Price.objects.filter(effective_from__lte=timezone.now()).first()
    return price or Price(effective_from=timezone.now())
