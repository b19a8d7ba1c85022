"""Raw CDP access to a rented session (issue 16), with unmodified clients against the running
product: Playwright's connect_over_cdp (Python here, Puppeteer through tests/js/cdp_client.mjs)."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import sync_playwright

from tests.conftest import ROOT, Api
from tests.helpers import new_task, start, wait_until

JS = ROOT / "tests" / "js"


def cdp_session(api: Api, **body: Any) -> dict[str, Any]:
    started = start(api, cdp=True, **body)
    assert started["connectUrl"].startswith("ws://") and "/cdp/cdp_" in started["connectUrl"]
    return started


def test_playwright_script_and_agent_share_one_page(api: Api, pages: str) -> None:
    session = cdp_session(api)
    sid = session["sessionId"]
    with sync_playwright() as p:
        browser = p.chromium.connect_over_cdp(session["connectUrl"])
        context = browser.contexts[0]
        page = context.pages[0]
        page.goto(f"{pages}/hello.html")
        assert page.locator("h1").inner_text() == "Hello heading"
        page.evaluate("document.querySelector('h2').textContent = 'Written by the script'")
        detail = api.get(f"/sessions/{sid}").json()
        assert detail["cdp"] == {"enabled": True, "clients": 1}

        # The agent works on the page as the script left it ...
        result = new_task(api, sid, "extract the title and headings")
        assert result["status"] == "complete", result
        assert "Written by the script" in result["data"]["message"]
        # ... and the script sees what the agent did.
        result = new_task(api, sid, f"go to {pages}/click.html then extract the title")
        assert result["status"] == "complete", result
        page.wait_for_url(f"{pages}/click.html", timeout=10_000)  # sync Playwright reads events while it waits
        assert page.title() == "Click target"
        assert "Click target" in result["data"]["message"]
        browser.close()  # Playwright only disconnects; the session goes on
    wait_until(lambda: api.get(f"/sessions/{sid}").json()["cdp"]["clients"] == 0)
    assert api.get(f"/sessions/{sid}").json()["state"] == "active"
