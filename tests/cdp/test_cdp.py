"""Raw CDP access to a rented session (issue 16), with unmodified clients against the running
product: Playwright's connect_over_cdp (Python here, Puppeteer through tests/js/cdp_client.mjs)."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Error as PlaywrightError
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


def test_puppeteer_connects_and_browser_close_ends_the_session(api: Api, pages: str) -> None:
    session = cdp_session(api)
    sid = session["sessionId"]
    api.wait_session(sid, "active")
    run = subprocess.run(
        ["node", str(JS / "cdp_client.mjs"), session["connectUrl"], f"{pages}/hello.html"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=JS,
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["pages"] == 1 and out["heading"] == "Hello heading" and out["title"] == "Hello page"
    ended = api.wait_session(sid, "terminated")
    assert ended["endReason"] == "browser_closed"
    events = api.get(f"/sessions/{sid}/events?after=0").json()["events"]
    assert any(e["name"] == "end_session" for e in events)
    time.sleep(1)  # the runner's last meter follows the end
    usage = api.get(f"/sessions/{sid}").json()["usage"]
    assert usage["cost"] > 0
    time.sleep(2.5)  # the meter runs every second in tests: nothing more is charged
    assert api.get(f"/sessions/{sid}").json()["usage"] == usage


def _connect_refused(p: Any, url: str, **kw: Any) -> None:
    with pytest.raises(PlaywrightError, match="403"):
        p.chromium.connect_over_cdp(url, timeout=10_000, **kw)


def test_tokens_are_scoped_expiring_and_revocable(api: Api, server: str, pages: str) -> None:
    a, b = cdp_session(api), cdp_session(api)
    base = server.replace("http://", "ws://")
    with sync_playwright() as p:
        # A's token drives A's browser only.
        browser = p.chromium.connect_over_cdp(a["connectUrl"])
        browser.contexts[0].pages[0].goto(f"{pages}/hello.html")
        assert len(browser.contexts[0].pages) == 1
        browser.close()
        wait_until(lambda: (api.get(f"/sessions/{a['sessionId']}").json()["currentUrl"] or "").endswith("hello.html"))
        assert api.get(f"/sessions/{b['sessionId']}").json()["currentUrl"] is None
        # The path is a token or, with the team's API key in a header, the session id; nothing else.
        _connect_refused(p, f"{base}/cdp/{b['sessionId']}")
        _connect_refused(p, f"{base}/cdp/{b['sessionId']}", headers={"Authorization": "Bearer enig_wrong"})
        other = p.chromium.connect_over_cdp(
            f"{base}/cdp/{b['sessionId']}", headers={"Authorization": f"Bearer {api.key}"}
        )
        other.close()
        # Expired.
        short = api.post(f"/sessions/{a['sessionId']}/cdp-tokens", {"ttlSeconds": 1}).json()
        assert short["expiresIn"] == 1000
        time.sleep(1.5)
        _connect_refused(p, short["connectUrl"])
        # Revoked: refused, and a client connected with it is closed.
        connected = p.chromium.connect_over_cdp(a["connectUrl"])
        closed: list[bool] = []
        connected.on("disconnected", lambda _: closed.append(True))
        revoked = api.http.delete(f"{server}/sessions/{a['sessionId']}/cdp-tokens", headers=api._headers(None))
        assert revoked.json()["revoked"] >= 1
        with pytest.raises(PlaywrightError, match="closed"):  # the gateway closes it
            connected.contexts[0].pages[0].wait_for_timeout(5000)
        assert closed and not connected.is_connected()
        _connect_refused(p, a["connectUrl"])
    # A session without "cdp": true has no CDP endpoint.
    plain = start(api)
    assert "connectUrl" not in plain
    assert api.post(f"/sessions/{plain['sessionId']}/cdp-tokens", {}).status_code == 409


def test_escapes_are_refused_and_downloads_land_in_the_session_files(api: Api, pages: str) -> None:
    session = cdp_session(api)
    sid = session["sessionId"]
    with sync_playwright() as p:
        browser = p.chromium.connect_over_cdp(session["connectUrl"])
        cdp = browser.new_browser_cdp_session()
        with pytest.raises(PlaywrightError, match="not allowed"):
            cdp.send("Target.createBrowserContext", {"proxyServer": "http://203.0.113.9:3128"})
        with pytest.raises(PlaywrightError, match="not allowed"):
            cdp.send("Target.setRemoteLocations", {"locations": [{"host": "127.0.0.1", "port": 9222}]})
        cdp.send("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": "/tmp/elsewhere"})
        page = browser.contexts[0].pages[0]
        page.goto(f"{pages}/download.html")
        page.click("text=Download report")
        wait_until(lambda: api.get(f"/sessions/{sid}/files").json()["files"], timeout=15)
        files = api.get(f"/sessions/{sid}/files").json()["files"]
        assert files[0]["originalName"] == "report.csv" and files[0]["taskId"] is None
        assert (
            api.http.get(files[0]["downloadUrl"], headers=api._headers(None)).content
            == (ROOT / "tests/pages/report.csv").read_bytes()
        )
        assert not Path("/tmp/elsewhere").exists()
        # While a human has taken over, the script's input is refused (the agent's is paused).
        page_cdp = browser.contexts[0].new_cdp_session(page)
        api.message(sid, {"actionType": "interaction", "action": {"type": "takeOverControl"}})
        wait_until(lambda: api.get(f"/sessions/{sid}").json()["humanControl"])
        with pytest.raises(PlaywrightError, match="taken over"):
            page_cdp.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": 10, "y": 10})
        api.message(sid, {"actionType": "interaction", "action": {"type": "releaseControl"}})
        wait_until(lambda: not api.get(f"/sessions/{sid}").json()["humanControl"])
        page_cdp.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": 10, "y": 10})
        browser.close()


def test_network_rules_hold_for_pages_the_script_opens(api: Api, pages: str) -> None:
    from tests.egress.servers import LogServer

    target = LogServer(("127.0.0.2",))
    try:
        session = cdp_session(api)
        with sync_playwright() as p:
            browser = p.chromium.connect_over_cdp(session["connectUrl"])
            page = browser.contexts[0].pages[0]
            blocked = page.goto(target.url("/secret", host="127.0.0.2"), timeout=10_000)
            assert blocked is not None and blocked.status == 403  # the gate's answer
            assert blocked.headers.get("x-enigma-blocked")
            page.goto(f"{pages}/hello.html")
            page.evaluate("url => fetch(url).catch(() => null)", target.url("/fetch", host="127.0.0.2"))
            page.wait_for_timeout(500)
            browser.close()
        assert not target.hits(), target.hits()
    finally:
        target.close()


def test_dashboard_session_page_shows_the_connect_url(api: Api, account: dict[str, Any]) -> None:
    from django.test import Client

    session = cdp_session(api)
    client = Client()
    client.force_login(account["user"])
    page = client.get(f"/app/sessions/{session['sessionId']}/", SERVER_NAME="127.0.0.1").content.decode()
    assert "Drive it with your own code" in page, page[page.find("<main") :][:3000]
    assert 'data-copy="#cdp-url"' in page and 'connect_over_cdp("ws://' in page
    assert "/cdp/cdp_" in page


def _relay_address(session_id: str) -> str | None:
    from enigma_site.redis import get_redis
    from sessions_app.cdp import relay_at_key

    return get_redis().get(relay_at_key(session_id))  # type: ignore[return-value]


def _established_to(port: int) -> bool:
    """Some local TCP connection to `port` is established (/proc/net/tcp, state 01)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "01" and int(fields[2].rsplit(":", 1)[1], 16) == port:
                return True
    return False


def test_the_gateway_dials_the_relay_directly_and_falls_back_to_redis(api: Api, pages: str) -> None:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    from enigma_site.redis import get_redis
    from sessions_app.cdp import relay_at_key

    session = cdp_session(api)
    sid = session["sessionId"]
    wait_until(lambda: _relay_address(sid), timeout=15)
    url = _relay_address(sid) or ""
    assert url.startswith("ws://127.0.0.1:"), url
    port = int(url.rsplit(":", 1)[1])
    with sync_playwright() as p:
        browser = p.chromium.connect_over_cdp(session["connectUrl"])
        assert _established_to(port)  # the gateway's connection to the worker's relay listener
        page = browser.contexts[0].pages[0]
        page.goto(f"{pages}/hello.html")
        assert page.locator("h1").inner_text() == "Hello heading"

        # The listener is one of the product's own services: the session's pages cannot reach it
        # (this suite allows 127.0.0.1 for its pages, not that port) ...
        blocked = page.goto(url.replace("ws://", "http://") + "/" + sid)
        assert blocked is not None and blocked.status == 403
        assert "own_service" in page.content()
        page.goto(f"{pages}/hello.html")
        browser.close()
        # ... and it opens nothing without the gateway's proof (an HMAC under the shared secret).
        for headers in ({}, {"X-Enigma-Client": "0" * 16, "X-Enigma-Relay-Auth": "0" * 64}):
            with pytest.raises(InvalidStatus) as refused:
                connect(f"{url}/{sid}", additional_headers=headers, open_timeout=5)
            assert refused.value.response.status_code == 403
        # Odd bytes in the proof are refused as plainly (not an error in the listener).
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            raw.sendall(
                f"GET /{sid} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                f"X-Enigma-Client: {'0' * 16}\r\n".encode()
                + b"X-Enigma-Relay-Auth: "
                + "\u00e9".encode("latin-1") * 64
                + b"\r\n\r\n"
            )
            assert raw.recv(200).startswith(b"HTTP/1.1 403"), "the listener did not refuse a non-ASCII proof"

        # An address nobody answers at (say its worker died): the client still gets the browser,
        # through Redis.
        get_redis().set(relay_at_key(sid), "ws://127.0.0.1:9", ex=60)
        browser = p.chromium.connect_over_cdp(session["connectUrl"])
        page = browser.contexts[0].pages[0]
        assert page.url.endswith("/hello.html")
        page.goto(f"{pages}/click.html")
        assert page.title() == "Click target"
        browser.close()
    api.post(
        "/start/send-message",
        {"sessionId": sid, "message": {"actionType": "state", "newState": "terminate"}},
    )
