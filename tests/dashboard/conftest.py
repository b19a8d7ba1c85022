"""Dashboard fixtures: a Chromium page on the live server, screenshots at desktop and phone size,
logged-in HTTP clients, and the bridge from localstripe's webhooks to our webhook endpoint."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
import requests

if TYPE_CHECKING:
    from playwright.sync_api import ViewportSize

SCREENSHOTS = Path(__file__).resolve().parent.parent / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/lib/chromium/chromium")
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}
PASSWORD = "correct-horse-battery-9"

T = TypeVar("T")
_db_thread = ThreadPoolExecutor(max_workers=1)


def orm(fn: Callable[[], T]) -> T:
    """Run ORM code off the thread where Playwright's sync API keeps an event loop running."""
    return _db_thread.submit(fn).result()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Collect static files before any server starts: with DEBUG off, WhiteNoise serves only
    STATIC_ROOT, scanned once when the server starts."""
    from django.core.management import call_command

    call_command("collectstatic", interactive=False, verbosity=0)


@pytest.fixture
def page(transactional_db: Any) -> Iterator[Any]:
    """A Chromium page. Playwright's sync API keeps an event loop on this thread, which Django
    refuses to run ORM code under: it is stopped before the database is flushed (hence the
    dependency), and tests reach the ORM through `orm()` meanwhile."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        context = browser.new_context(viewport=DESKTOP)
        context.set_default_timeout(20_000)
        page = context.new_page()
        page.on("dialog", lambda dialog: dialog.accept())
        yield page
        browser.close()


@pytest.fixture
def shoot() -> Callable[[Any, str], None]:
    """Save the page at 1280x800 and at 390x844 into tests/screenshots/."""
    SCREENSHOTS.mkdir(exist_ok=True)

    def take(page: Any, name: str) -> None:
        page.screenshot(path=str(SCREENSHOTS / f"{name}-desktop.png"), full_page=True)
        page.set_viewport_size(PHONE)
        page.wait_for_timeout(150)
        page.screenshot(path=str(SCREENSHOTS / f"{name}-phone.png"), full_page=True)
        page.set_viewport_size(DESKTOP)
        page.wait_for_timeout(100)

    return take


@pytest.fixture
def stripe_webhooks(server: str) -> str:
    """Have localstripe deliver its events to our webhook endpoint, signed with our secret."""
    base = os.environ.get("STRIPE_API_BASE")
    if not base:
        pytest.skip("run through scripts/test.sh (starts localstripe)")
    response = requests.post(
        f"{base}/_config/webhooks/enigma-dashboard",
        timeout=10,
        data={"url": f"{server}/billing/stripe/webhook", "secret": os.environ["STRIPE_WEBHOOK_SECRET"]},
    )
    response.raise_for_status()
    return base


def login_client(server: str, email: str, password: str = PASSWORD) -> requests.Session:
    """A requests session logged in through the login form (with its CSRF token)."""
    client = requests.Session()
    form = client.get(f"{server}/login/", timeout=10)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
    assert token, "login form has no CSRF token"
    response = client.post(
        f"{server}/login/",
        timeout=10,
        allow_redirects=False,
        data={"username": email, "password": password, "csrfmiddlewaretoken": token.group(1)},
    )
    assert response.status_code == 302, response.text[:500]
    return client


def csrf_of(client: requests.Session, server: str, path: str) -> str:
    html = client.get(f"{server}{path}", timeout=10).text
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert match
    return match.group(1)


def unique_email(prefix: str) -> str:
    return f"{prefix}{time.time_ns()}@example.com"
