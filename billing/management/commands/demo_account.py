"""Create the demo user (with a balance) once, and print a fresh API key for it.

The demo user is an ordinary customer: never staff, never superuser (a customer's agent must not
be able to log in to Django admin with it). Its password is random and printed once, when the
user is created (or with --reset-password). Output: the API key on the first line, then
`password <value>` when a password was set.
"""

from __future__ import annotations

import secrets
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from accounts.services import api_key_create, personal_team, user_get_or_create
from billing.money import usd_to_micros
from billing.services import ledger_post

DEMO_EMAIL = "demo@enigma.local"


class Command(BaseCommand):
    help = "Create the demo account if missing and print a new API key for it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--reset-password", action="store_true", help="give the demo user a new random password and print it"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        user, created = user_get_or_create(email=DEMO_EMAIL)
        password = ""
        if created or options["reset_password"]:
            password = secrets.token_urlsafe(12)
            user.set_password(password)
        # Older versions made the demo user a superuser: take that back.
        user.is_staff = user.is_superuser = False
        user.save(update_fields=["password", "is_staff", "is_superuser"])
        team = personal_team(user)
        # The grant's key is fixed, so the demo balance is credited once, not at every start.
        ledger_post(
            team=team,
            amount_micros=usd_to_micros(25),
            kind="grant",
            idempotency_key=f"demo-grant:{user.pk}",
            description="Demo balance",
        )
        self.stdout.write(api_key_create(team=team, user=user, name="demo").raw)
        if password:
            self.stdout.write(f"password {password}")
