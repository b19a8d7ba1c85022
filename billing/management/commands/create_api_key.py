"""Create (or reuse) a user and team, credit a balance, and print a new API key on stdout."""

from __future__ import annotations

import secrets
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.services import api_key_create, personal_team, user_get_or_create
from billing.money import usd_to_micros
from billing.services import ledger_post


class Command(BaseCommand):
    help = "Create an API key for EMAIL (creating the user and personal team if missing)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--email", required=True)
        parser.add_argument("--balance", default="0", help="USD to credit to the team")
        parser.add_argument("--name", default="cli")

    def handle(self, *args: Any, email: str, balance: str, name: str, **options: Any) -> None:
        try:
            amount = Decimal(balance)
        except InvalidOperation as exc:
            raise CommandError(f"--balance must be a number of USD, got {balance!r}") from exc
        if amount < 0:
            raise CommandError("--balance must not be negative")
        user, _ = user_get_or_create(email=email)
        team = personal_team(user)
        if amount > 0:
            ledger_post(
                team=team,
                amount_micros=usd_to_micros(amount),
                kind="grant",
                idempotency_key=f"cli-grant:{secrets.token_hex(8)}",
                description=f"create_api_key --balance {amount}",
            )
        created = api_key_create(team=team, user=user, name=name)
        self.stdout.write(created.raw)
