"""`manage.py billing_reconcile`: prove every team's balance equals the sum of its entries."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from accounts.models import Team
from billing.selectors import ledger_mismatches


class Command(BaseCommand):
    help = (
        "Check, for every team, that the cached balance equals the sum of its ledger entries "
        "and the balance recorded on its latest entry. Exits non-zero on any mismatch."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        mismatches = ledger_mismatches()
        for m in mismatches:
            self.stderr.write(
                f"team {m.team_id}: cached balance {m.cached_micros} µ$, sum of entries "
                f"{m.ledger_micros} µ$, latest entry's balance {m.last_balance_after_micros} µ$"
            )
        if mismatches:
            raise CommandError(f"{len(mismatches)} team(s) out of balance")
        self.stdout.write(
            self.style.SUCCESS(f"OK: {Team.objects.count()} team(s), every balance equals the sum of its entries")
        )
