"""Admin: prices editable, ledger read-only with adjustments through ledger_post, events listed."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from accounts.models import User
from billing.models import LedgerEntry, Price, StripeEvent
from billing.selectors import team_balance_micros


@pytest.fixture
def staff(account: dict[str, Any]) -> Client:
    admin = User.objects.create_superuser(email="ops@example.com", password="pw-123456789")
    client = Client()
    client.force_login(admin)
    return client


def test_adjustment_form_posts_once_with_its_reason(staff: Client, account: dict[str, Any]) -> None:
    page = staff.get("/admin/billing/ledgerentry/add/")
    assert page.status_code == 200
    key = re.search(r'name="key" value="([0-9a-f]+)"', page.content.decode())
    assert key is not None
    form = {"team": account["team"].pk, "amount_usd": "-1.25", "reason": "goodwill correction", "key": key.group(1)}
    assert staff.post("/admin/billing/ledgerentry/add/", form).status_code == 302
    assert staff.post("/admin/billing/ledgerentry/add/", form).status_code == 302  # double submit
    entry = LedgerEntry.objects.get(kind="adjustment")
    assert entry.created_by is not None
    assert (entry.amount_micros, entry.description, entry.created_by.email) == (
        -1_250_000,
        "goodwill correction",
        "ops@example.com",
    )
    assert team_balance_micros(team=account["team"]) == 10_000_000 - 1_250_000


def test_ledger_entries_cannot_be_changed_or_deleted(staff: Client, account: dict[str, Any]) -> None:
    entry = LedgerEntry.objects.get(team=account["team"])
    url = f"/admin/billing/ledgerentry/{entry.pk}/change/"
    assert staff.get(url).status_code == 200  # view only
    staff.post(url, {"amount_micros": 1})
    assert staff.post(f"/admin/billing/ledgerentry/{entry.pk}/delete/").status_code == 403
    entry.refresh_from_db()
    assert entry.amount_micros == 10_000_000


def test_prices_and_stripe_events_pages(staff: Client, account: dict[str, Any]) -> None:
    response = staff.post(
        "/admin/billing/price/add/",
        {
            "effective_from_0": "2030-01-01",
            "effective_from_1": "00:00:00",
            "input_per_million_micros": 500_000,
            "output_per_million_micros": 2_000_000,
            "compute_per_minute_micros": 15_000,
        },
    )
    assert response.status_code == 302
    assert Price.objects.filter(compute_per_minute_micros=15_000).exists()
    StripeEvent.objects.create(stripe_id="evt_1", type="customer.created", payload={"data": {"object": {}}})
    listing = staff.get("/admin/billing/stripeevent/")
    assert b"evt_1" in listing.content and b"received" in listing.content
    staff.post(
        "/admin/billing/stripeevent/", {"action": "reprocess", "_selected_action": [StripeEvent.objects.get().pk]}
    )
    assert StripeEvent.objects.get().status == "ignored"
