"""Create the demo user (with a balance) once, and print a fresh API key for it."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from accounts.models import User
from accounts.services import api_key_create, personal_team, user_get_or_create
from billing.money import usd_to_micros
from billing.services import ledger_post

DEMO_EMAIL = "demo@enigma.local"
DEMO_PASSWORD = "enigma-demo"


class Command(BaseCommand):
    help = "Create the demo account if missing and print a new API key for it."

    def handle(self, *args: Any, **options: Any) -> None:
        user, created = user_get_or_create(email=DEMO_EMAIL)
        if created:
            user.set_password(DEMO_PASSWORD)
            user.save(update_fields=["password"])
        team = personal_team(user)
        # The grant's key is fixed, so the demo balance is credited once, not at every start.
        ledger_post(team=team, amount_micros=usd_to_micros(25), kind="grant",
                    idempotency_key=f"demo-grant:{user.pk}", description="Demo balance")
        if not User.objects.filter(is_superuser=True).exists():
            user.is_staff = user.is_superuser = True
            user.save(update_fields=["is_staff", "is_superuser"])
        self.stdout.write(api_key_create(team=team, user=user, name="demo").raw)
