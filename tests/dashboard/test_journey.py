"""The paying customer's path through the dashboard, in a real browser against the live server
and a real browser worker: sign up, key, top up with Stripe.js, playground, live view, takeover,
terminate, and the cost on the billing page."""

from __future__ import annotations

import os
import re
import time
from typing import Any

import requests
import stripe

from tests.dashboard.conftest import PASSWORD, orm, unique_email


def expect_text(locator: Any, pattern: str, timeout: float = 30) -> None:
    from playwright.sync_api import expect

    expect(locator).to_contain_text(re.compile(pattern), timeout=timeout * 1000)


def attach_3ds_card(intent_id: str) -> None:
    """localstripe's stand-in Stripe.js does not send the card Element to confirmCardPayment (it
    only runs the 3D Secure step), so attach a card that asks for 3D Secure server-side, as the
    real Stripe.js would have done from the Element."""
    client = stripe.StripeClient(os.environ["STRIPE_API_KEY"], base_addresses={"api": os.environ["STRIPE_API_BASE"]})
    method = client.v1.payment_methods.create(
        params={"type": "card", "card": {"number": "4000002500003155", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}
    )
    client.v1.payment_intents.update(intent_id, params={"payment_method": method.id})
    assert client.v1.payment_intents.confirm(intent_id).status == "requires_action"


def test_customer_signs_up_tops_up_runs_a_session_and_sees_its_cost(
    page: Any, shoot: Any, server: str, worker: Any, pages: str, stripe_webhooks: str
) -> None:
    email = unique_email("journey")
    page.goto(server + "/")
    shoot(page, "01-landing")
    page.get_by_role("link", name="Create an account").click()
    page.fill("#id_email", email)
    page.fill("#id_password", PASSWORD)
    shoot(page, "02-signup")
    page.get_by_role("button", name="Create account").click()
    page.wait_for_url(server + "/app/")
    expect_text(page.locator("h1"), "Overview")
    shoot(page, "03-overview-new")

    # An API key, shown once, that works against the API.
    page.get_by_role("link", name="API keys", exact=True).first.click()
    shoot(page, "04-keys-empty")
    page.fill("#id_name", "ci")
    page.get_by_role("button", name="Create key").click()
    raw = page.get_by_test_id("new-key").inner_text().strip()
    assert raw.startswith("enig_")
    shoot(page, "05-keys-created")
    account = requests.get(f"{server}/account", headers={"Authorization": f"Bearer {raw}"}, timeout=10)
    assert account.status_code == 200 and account.json()["balance"] == 0
    page.reload()
    assert raw not in page.content()

    # Top up $25 with the card form (Stripe.js from localstripe); the webhook credits it.
    page.get_by_role("link", name="Billing", exact=True).first.click()
    page.wait_for_selector("#card-element input")
    shoot(page, "06-billing-empty")
    for name, value in (
        ("number", "4000002500003155"),
        ("exp_month", "12"),
        ("exp_year", "34"),
        ("cvc", "123"),
        ("postal_code", "42424"),
    ):
        page.fill(f"#card-element input[placeholder={name}]", value)
    with page.expect_response("**/app/billing/topup/") as created:
        page.get_by_role("button", name="Pay $25.00").click()
    intent = created.value.json()["paymentIntent"]
    complete = page.get_by_role("button", name="Complete authentication")
    complete.wait_for()
    attach_3ds_card(intent)
    complete.click()
    expect_text(page.locator("#topup-message"), r"balance is now \$25\.00")
    page.wait_for_load_state("load")
    expect_text(page.get_by_test_id("balance"), r"\$25\.00")

    # The playground starts a session on a local page; the live view shows frames.
    page.get_by_role("link", name="Playground", exact=True).first.click()
    page.fill("#id_starting_url", f"{pages}/click.html")
    page.fill("#id_task", "extract the title")
    assert "click.html" in page.locator("#curl").inner_text()
    shoot(page, "07-playground")
    page.get_by_role("button", name="Start session").click()
    page.wait_for_url(re.compile(r"/app/sessions/[0-9a-f]{32}/$"))
    session_id = page.url.rstrip("/").rsplit("/", 1)[1]
    expect_text(page.locator("#tasks"), "Click target")
    viewer = page.frame_locator("#viewer")
    expect_text(viewer.locator("#status"), "Live")
    expect_text(page.locator("#timeline"), "task completed")

    # Take over and click the page's button (page x 150, y 130 in the 1024-wide window).
    viewer.locator("#takeover").click()
    expect_text(page.locator("#timeline"), "You took control", timeout=10)
    frame = viewer.locator("#page")  # the click surface, over the JPEG frame or the WebRTC video
    box = frame.bounding_box()
    scale = box["width"] / 1024
    frame.click(position={"x": 150 * scale, "y": 130 * scale})
    expect_text(page.locator("#timeline"), "You: CLICK", timeout=10)
    # Focus the text field and type: its blinking caret keeps the screencast sending frames.
    frame.click(position={"x": 450 * scale, "y": 110 * scale})
    frame.press_sequentially("hi")
    expect_text(page.locator("#timeline"), "You: TYPE", timeout=10)
    page.wait_for_function(  # a picture: the WebRTC video, or the JPEG frames it falls back to
        "() => { const d = document.querySelector('#viewer').contentDocument;"
        " const f = d.querySelector('#frame'), v = d.querySelector('#video');"
        " return (v && v.classList.contains('shown') && v.videoWidth > 0) || (f && !f.hidden && f.src.startsWith('data:image/jpeg')); }",
        timeout=20_000,
    )
    shoot(page, "08-session-live")
    viewer.locator("#takeover").click()
    expect_text(page.locator("#timeline"), "Control returned to the agent", timeout=10)
    page.fill("#id_task", "extract the title")
    page.get_by_role("button", name="Send task").click()
    expect_text(page.locator("#tasks"), r"clicked at 1[45]\d,1[23]\d")

    # Terminate; the session ends and its cost reaches the ledger.
    with page.expect_response("**/control/") as ended:
        page.get_by_role("button", name="Terminate").click()
    assert ended.value.json()["ok"] is True, ended.value.text()
    expect_text(page.locator("#timeline"), r"Session ended \(terminated\)", timeout=15)
    expect_text(page.locator("#s-state"), "Terminated")
    expect_text(page.locator("#s-ended"), "This session has ended")
    shoot(page, "09-session-ended")

    from billing.models import LedgerEntry

    deadline = time.time() + 20
    while time.time() < deadline and not orm(
        lambda: LedgerEntry.objects.filter(session_id=session_id, kind="usage").exists()
    ):
        time.sleep(0.3)
    page.get_by_role("link", name="Billing", exact=True).first.click()
    ledger = page.locator("#ledger")
    expect_text(ledger, session_id[:10])
    expect_text(ledger, "Top-up")
    charged = -sum(
        orm(lambda: list(LedgerEntry.objects.filter(session_id=session_id).values_list("amount_micros", flat=True)))
    )
    assert charged > 0
    balance = page.get_by_test_id("balance").inner_text()
    assert balance == f"${(25_000_000 - charged) // 10_000 / 100:.2f}"
    shoot(page, "10-billing-used")
    csv = page.request.get(f"{server}/app/billing/ledger.csv")
    assert csv.status == 200 and session_id in csv.text() and "topup" in csv.text()

    page.get_by_role("link", name="Sessions", exact=True).first.click()
    expect_text(page.locator("#session-rows"), "Terminated")
    shoot(page, "11-sessions")
    page.get_by_role("link", name="Overview", exact=True).first.click()
    shoot(page, "12-overview-used")

    # Invite a teammate: the signed link is shown once the invitation is sent.
    page.get_by_role("link", name="Team", exact=True).first.click()
    page.fill("#id_email", unique_email("mate"))
    page.get_by_role("button", name="Send invitation").click()
    expect_text(page.locator("#invite-link"), r"/invite/")
    shoot(page, "13-members")


def test_login_and_password_reset_pages(page: Any, shoot: Any, server: str) -> None:
    from accounts.services import user_create

    email = unique_email("reset")
    orm(lambda: user_create(email=email, password=PASSWORD))
    page.goto(server + "/login/")
    page.fill("#id_username", email)
    page.fill("#id_password", "wrong-password")
    page.get_by_role("button", name="Log in").click()
    expect_text(page.locator(".alert-error"), "didn’t match")
    shoot(page, "20-login-error")
    page.get_by_role("link", name="Forgot it?").click()
    page.fill("#id_email", email)
    shoot(page, "21-password-reset")
    page.get_by_role("button", name="Send reset link").click()
    expect_text(page.locator("h1"), "Check your email")
    page.goto(server + "/app/billing/")
    assert "/login/?next=/app/billing/" in page.url
