"""Seed the contract's default prices (api.md §6.1) so that admin shows and can edit them."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from django.db import migrations

DEFAULT_FROM = datetime(2020, 1, 1, tzinfo=timezone.utc)


def seed(apps: Any, schema_editor: Any) -> None:
    Price = apps.get_model("billing", "Price")
    Price.objects.get_or_create(
        effective_from=DEFAULT_FROM,
        defaults={
            "input_per_million_micros": 600_000,
            "output_per_million_micros": 2_700_000,
            "compute_per_minute_micros": 20_000,
        },
    )


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0002_stripeevent_topup_and_more"),
    ]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
