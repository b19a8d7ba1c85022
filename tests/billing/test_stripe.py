"""Top-ups with Stripe (localstripe): PaymentIntents, signed webhooks, exactly-once credit."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests
from django.conf import settings
from django.db import connection
from django.test import Client
from stripe.params import PaymentIntentCreateParams

from accounts.services import PermissionDenied
from billing.models import LedgerEntry, StripeEvent, TopUp
from billing.selectors import team_balance_micros
from billing.services import topup_create
from billing.stripe_client import stripe_client
from enigma_site.errors import InvalidParameter

from .helpers import intent_event, needs_localstripe, sign

WEBHOOK = "/billing/stripe/webhook"
pytestmark = needs_localstripe


def deliver(payload: bytes, signature: str) -> Any:
    return Client().post(WEBHOOK, data=payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=signature)


@pytest.fixture
def topup(team_members: dict[str, Any]) -> TopUp:
    """A $25 top-up the owner started; its PaymentIntent exists in localstripe."""
    intent_id, _ = topup_create(team=team_members["team"], user=team_members["owner"], amount_usd="25")
    return TopUp.objects.get(payment_intent_id=intent_id)


def test_owner_and_admin_create_payment_intents_members_may_not(team_members: dict[str, Any]) -> None:
    team = team_members["team"]
    intent_id, client_secret = topup_create(team=team, user=team_members["owner"], amount_usd="12.34")
    assert intent_id.startswith("pi_") and client_secret.startswith(f"{intent_id}_secret_")
    intent = stripe_client().v1.payment_intents.retrieve(intent_id)
    assert (intent.amount, intent.currency) == (1234, "usd")
    assert intent.metadata["team_id"] == str(team.pk)
    row = TopUp.objects.get(payment_intent_id=intent_id)
    assert (row.amount_cents, row.status, row.user) == (1234, "created", team_members["owner"])

    assert topup_create(team=team, user=team_members["admin"], amount_usd=5)[0].startswith("pi_")
    with pytest.raises(PermissionDenied) as denied:
        topup_create(team=team, user=team_members["member"], amount_usd=5)
    assert denied.value.status_code == 403
    assert TopUp.objects.filter(team=team).count() == 2
    assert team_balance_micros(team=team) == 10_000_000  # nothing credited before payment


@pytest.mark.parametrize("amount", ["4.99", "1000.01", "7.125", "ten", "NaN", -5])
def test_top_up_amount_outside_the_bounds_is_rejected(team_members: dict[str, Any], amount: Any) -> None:
    with pytest.raises(InvalidParameter) as invalid:
        topup_create(team=team_members["team"], user=team_members["owner"], amount_usd=amount)
    assert invalid.value.details["parameter"] == "amount"
    assert invalid.value.status_code == 400


def test_webhook_replayed_ten_times_credits_once(topup: TopUp) -> None:
    payload = intent_event("evt_replayed", topup.payment_intent_id or "", 2_500)
    for _ in range(10):
        response = deliver(payload, sign(payload))
        assert response.status_code == 200, response.content
        assert response.json()["status"] == "processed"
    entry = LedgerEntry.objects.get(idempotency_key=f"stripe:pi:{topup.payment_intent_id}")
    assert (entry.kind, entry.amount_micros, entry.team_id) == ("topup", 25_000_000, topup.team_id)
    assert entry.created_by_id == topup.user_id
    assert team_balance_micros(team=topup.team_id) == 10_000_000 + 25_000_000
    event = StripeEvent.objects.get(stripe_id="evt_replayed")
    assert (event.status, event.deliveries, event.type) == ("processed", 10, "payment_intent.succeeded")
    topup.refresh_from_db()
    assert (topup.status, topup.ledger_entry_id) == ("succeeded", entry.pk)


def test_webhook_delivered_twice_at_once_credits_once(topup: TopUp, reconcile: Callable[[], Any]) -> None:
    """Two deliveries of one event, and a second event about the same intent, all at once."""
    pi = topup.payment_intent_id or ""
    payloads = [
        intent_event("evt_a", pi, 2_500),
        intent_event("evt_a", pi, 2_500),
        intent_event("evt_b", pi, 2_500),
        intent_event("evt_b", pi, 2_500),
    ]
    barrier = threading.Barrier(len(payloads))
    statuses: list[int] = []

    def post(payload: bytes) -> None:
        try:
            barrier.wait()
            statuses.append(deliver(payload, sign(payload)).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=post, args=(p,)) for p in payloads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert statuses == [200, 200, 200, 200]
    assert LedgerEntry.objects.filter(team_id=topup.team_id, kind="topup").count() == 1
    assert team_balance_micros(team=topup.team_id) == 35_000_000
    assert sorted(StripeEvent.objects.values_list("stripe_id", "deliveries")) == [("evt_a", 2), ("evt_b", 2)]
    assert reconcile().returncode == 0


@pytest.mark.parametrize(
    ("amount", "received", "currency"),
    [
        (2_500, 250_000, "usd"),  # Stripe says it received more than the top-up named
        (2_500, 100, "usd"),  # ... or less
        (250_000, 250_000, "usd"),  # the intent's amount itself differs from the top-up
        (2_500, 2_500, "eur"),  # another currency
    ],
)
def test_event_whose_amount_or_currency_differs_from_the_top_up_is_flagged_not_credited(
    topup: TopUp, amount: int, received: int, currency: str, caplog: pytest.LogCaptureFixture
) -> None:
    pi = topup.payment_intent_id or ""
    payload = intent_event("evt_odd", pi, amount, received_cents=received, currency=currency)
    response = deliver(payload, sign(payload))
    # Handled (Stripe need not retry it), but nothing is credited.
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "processed"
    assert not LedgerEntry.objects.filter(kind="topup").exists()
    assert team_balance_micros(team=topup.team_id) == 10_000_000
    topup.refresh_from_db()
    assert topup.status == "flagged" and topup.ledger_entry_id is None
    assert f"{received} {currency}" in topup.flag_reason and "2500 usd" in topup.flag_reason
    assert any(pi in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)
    # A replay changes nothing; the genuine event still credits the top-up, once.
    assert deliver(payload, sign(payload)).status_code == 200
    genuine = intent_event("evt_genuine", pi, 2_500)
    assert deliver(genuine, sign(genuine)).json()["status"] == "processed"
    assert team_balance_micros(team=topup.team_id) == 10_000_000 + 25_000_000
    topup.refresh_from_db()
    assert topup.status == "succeeded"


@pytest.mark.parametrize("how", ["forged", "stale", "missing", "wrong secret"])
def test_forged_or_stale_signature_is_rejected(topup: TopUp, how: str) -> None:
    payload = intent_event("evt_forged", topup.payment_intent_id or "", 2_500)
    signature = {
        "forged": sign(payload).replace("v1=", "v1=00"),
        "stale": sign(payload, timestamp=int(time.time()) - 600),
        "missing": "",
        "wrong secret": sign(payload, secret="whsec_attacker"),
    }[how]
    response = deliver(payload, signature)
    assert response.status_code == 400
    assert response.json()["code"] == "INVALID_SIGNATURE"
    assert not StripeEvent.objects.exists()
    assert team_balance_micros(team=topup.team_id) == 10_000_000


def test_tampered_body_with_a_valid_header_is_rejected(topup: TopUp) -> None:
    payload = intent_event("evt_x", topup.payment_intent_id or "", 2_500)
    signature = sign(payload)
    tampered = payload.replace(b'"amount": 2500', b'"amount": 9999999')
    assert deliver(tampered, signature).status_code == 400


def test_unknown_payment_intent_is_recorded_as_failed(team_members: dict[str, Any]) -> None:
    payload = intent_event("evt_unknown", "pi_not_ours", 2_500)
    response = deliver(payload, sign(payload))
    assert response.status_code == 500
    event = StripeEvent.objects.get(stripe_id="evt_unknown")
    assert event.status == "failed" and "pi_not_ours" in event.error
    assert not LedgerEntry.objects.filter(kind="topup").exists()


def test_other_event_types_are_stored_and_ignored(team_members: dict[str, Any]) -> None:
    payload = intent_event("evt_other", "pi_whatever", 100, event_type="customer.created")
    assert deliver(payload, sign(payload)).json()["status"] == "ignored"


def test_payment_failure_marks_the_top_up_failed(topup: TopUp) -> None:
    payload = intent_event("evt_fail", topup.payment_intent_id or "", 2_500, event_type="payment_intent.payment_failed")
    assert deliver(payload, sign(payload)).status_code == 200
    topup.refresh_from_db()
    assert topup.status == "failed"
    assert team_balance_micros(team=topup.team_id) == 10_000_000


def test_top_up_end_to_end_through_localstripe(
    server: str, team_members: dict[str, Any], reconcile: Callable[[], Any]
) -> None:
    """localstripe confirms the intent and itself delivers the signed webhook to Daphne."""
    requests.post(
        f"{settings.STRIPE_API_BASE}/_config/webhooks/enigma",
        timeout=10,
        data={
            "url": f"{server}{WEBHOOK}",
            "secret": settings.STRIPE_WEBHOOK_SECRET,
            "events[]": ["payment_intent.succeeded", "payment_intent.payment_failed"],
        },
    ).raise_for_status()
    team, owner = team_members["team"], team_members["owner"]
    intent_id, _ = topup_create(team=team, user=owner, amount_usd="42.50")

    client = stripe_client()
    method = client.v1.payment_methods.create(
        params={"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}
    )
    client.v1.payment_intents.update(intent_id, params={"payment_method": method.id})
    intent = client.v1.payment_intents.confirm(intent_id)
    assert intent.status == "succeeded"

    deadline = time.time() + 20
    while time.time() < deadline and team_balance_micros(team=team) == 10_000_000:
        time.sleep(0.2)
    assert team_balance_micros(team=team) == 10_000_000 + 42_500_000
    entry = LedgerEntry.objects.get(idempotency_key=f"stripe:pi:{intent_id}")
    assert (entry.kind, entry.amount_micros, entry.created_by) == ("topup", 42_500_000, owner)
    event = StripeEvent.objects.get(type="payment_intent.succeeded")
    assert event.status == "processed"
    assert event.payload["data"]["object"]["id"] == intent_id
    assert TopUp.objects.get(payment_intent_id=intent_id).status == "succeeded"
    assert reconcile().returncode == 0


class RecordingStripe:
    """An HTTP relay to localstripe that keeps the form parameters of every request it forwards."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.requests: list[tuple[str, dict[str, list[str]]]] = []
        relay = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                relay.requests.append((self.path, parse_qs(body.decode())))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in {"host", "content-length"}}
                answer = requests.post(relay.upstream + self.path, data=body, headers=headers, timeout=30)
                self.send_response(answer.status_code)
                self.send_header("Content-Type", answer.headers.get("Content-Type", "application/json"))
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"


def test_topup_sends_only_parameters_the_stripe_api_version_accepts(
    team_members: dict[str, Any], settings: Any
) -> None:
    relay = RecordingStripe(settings.STRIPE_API_BASE)
    settings.STRIPE_API_BASE = relay.base
    try:
        topup_create(team=team_members["team"], user=team_members["owner"], amount_usd="25")
    finally:
        relay.server.shutdown()

    [(path, params)] = relay.requests
    assert path == "/v1/payment_intents"
    sent = {key.partition("[")[0] for key in params}
    accepted = PaymentIntentCreateParams.__required_keys__ | PaymentIntentCreateParams.__optional_keys__
    assert sent - accepted == set()
