"""Fixtures for the agent tests: one real Chromium for the whole run, a small local site, the
Python documentation (Debian's python3.11-doc) served on 127.0.0.1, a fake Messages API and a
recording AgentCallbacks."""

from __future__ import annotations

import functools
import html
import os
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright

from agents.types import TaskStopped
from tests.fakes.fake_anthropic import FakeAnthropic

CHROMIUM_PATH = os.environ.get("CHROMIUM_PATH", "/usr/lib/chromium/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PYTHON_DOCS = Path("/usr/share/doc/python3.11/html")

PAGES: dict[str, str] = {
    "/index.html": """<title>Widget Shop</title>
        <h1>Widget Shop</h1><p>Welcome to the shop.</p>
        <form action="/search" role="search"><input type="search" name="q" aria-label="Search products">
        <button>Go</button></form>
        <nav><a href="/products.html">Products</a> <a href="/form.html">Contact us</a>
        <a href="/login.html">Sign in</a></nav>""",
    "/products.html": """<title>Products</title><h1>Products</h1><h2>Widgets</h2>
        <table><tr><th>Name</th><th>Price</th></tr><tr><td>Blue widget</td><td>$5</td></tr>
        <tr><td>Red widget</td><td>$7</td></tr></table>
        <a href="/widget.html">Blue widget details</a>
        <button onclick="location.href='/checkout.html'">Buy now</button>""",
    "/widget.html": "<title>Blue widget</title><h1>Blue widget</h1><p>A very blue widget.</p>",
    "/checkout.html": "<title>Order placed</title><h1>Thank you for your order</h1>",
    "/form.html": """<title>Contact</title><h1>Contact us</h1>
        <form action="/echo" method="get">
        <label for="m">Message</label><input id="m" name="message">
        <label>Color <select name="color"><option>Red</option><option>Green</option></select></label>
        <button type="submit">Send</button></form>""",
    "/login.html": """<title>Sign in</title><h1>Sign in</h1>
        <form action="/welcome" method="post">
        <label>Email <input type="email" name="email"></label>
        <label>Password <input type="password" name="password"></label>
        <button type="submit">Log in</button></form>""",
    "/long.html": "<title>Long page</title><h1>Top</h1>"
    + "".join(f"<p style='height:300px'>Paragraph {i}</p>" for i in range(12))
    + "<a href='/index.html'>Back home</a><h2>Bottom</h2>",
    "/delayed.html": """<title>Delayed</title><h1>Loading</h1><div id="slot"></div>
        <script>setTimeout(() => { document.getElementById('slot').innerHTML =
        '<a href="/widget.html">Late link</a>'; }, 400);</script>""",
}


class _SiteHandler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if parts.path == "/search":
            term = html.escape(query.get("q", ""))
            self._send(
                f"<title>Search: {term}</title><h1>Results for {term}</h1>"
                f"<ul><li><a href='/widget.html'>Blue widget</a></li></ul>"
            )
        elif parts.path == "/echo":
            self._send(
                "<title>Sent</title><h1>Message sent</h1>"
                f"<p>You wrote: {html.escape(query.get('message', ''))}</p>"
                f"<p>Color: {html.escape(query.get('color', ''))}</p>"
            )
        elif parts.path in PAGES:
            self._send(PAGES[parts.path])
        else:
            self.send_error(404)

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        # The page echoes the credentials back, so the tests can check they are scrubbed.
        self._send(
            "<title>Welcome</title>"
            f"<h1>Welcome, {html.escape(form.get('email', ''))}</h1>"
            f"<p>Your password is {html.escape(form.get('password', ''))}</p>"
        )

    def _send(self, body: str) -> None:
        data = f"<!doctype html><meta charset='utf-8'>{body}".encode()
        self.send_response(200)
        self.send_header("content-type", "text/html; charset=utf-8")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _QuietStaticHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return


def _serve(handler: Any) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def site() -> Iterator[str]:
    """Base URL of the local test site."""
    yield from _serve(_SiteHandler)


@pytest.fixture(scope="session")
def python_docs() -> Iterator[str]:
    """Base URL of the Python documentation served from the Debian package."""
    if not (PYTHON_DOCS / "index.html").exists():
        pytest.skip("python3.11-doc is not installed")
    yield from _serve(functools.partial(_QuietStaticHandler, directory=str(PYTHON_DOCS)))


# Package scope: one Chromium for all agent tests, gone before other packages count processes.
@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM_PATH, args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


@pytest_asyncio.fixture(loop_scope="session")
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1024, "height": 445})
    yield await context.new_page()
    await context.close()


@pytest.fixture(scope="session")
def fake_anthropic_server() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
def fake_anthropic(fake_anthropic_server: FakeAnthropic) -> FakeAnthropic:
    fake_anthropic_server.reset()
    return fake_anthropic_server


@dataclass
class RecordingCallbacks:
    """AgentCallbacks that records everything and answers guardrails from a script.

    An answer of None in `answers` means "the human pressed stop" (raises TaskStopped).
    """

    answers: deque[str | None] = field(default_factory=deque)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    usage_calls: list[tuple[int, int]] = field(default_factory=list)
    questions: list[str] = field(default_factory=list)
    checkpoints: int = 0

    async def event(self, kind: str, payload: dict[str, Any]) -> None:
        self.events.append((kind, payload))

    async def usage(self, input_tokens: int, output_tokens: int) -> None:
        self.usage_calls.append((input_tokens, output_tokens))

    async def checkpoint(self) -> None:
        self.checkpoints += 1

    async def ask_human(self, question: str) -> str:
        self.questions.append(question)
        answer = self.answers.popleft() if self.answers else "ok"
        if answer is None:
            raise TaskStopped()
        return answer

    def payloads(self, kind: str) -> list[dict[str, Any]]:
        return [payload for event_kind, payload in self.events if event_kind == kind]

    def action_names(self) -> list[str]:
        return [payload["name"] for payload in self.payloads("action")]


@pytest.fixture
def callbacks() -> RecordingCallbacks:
    return RecordingCallbacks()
