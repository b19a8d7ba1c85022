"""WHEP end to end: a real Chromium page is the client of `streaming.webRTCURL` (an offer from
RTCPeerConnection, the answer played in a <video>) while the session's worker renders an
animated page; frames cross from the worker to the web tier over the channel layer."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from playwright.sync_api import Page, sync_playwright

from tests.conftest import Api, Proc

pytestmark = pytest.mark.slow


@pytest.fixture
def api(frames_server: str, worker: Proc, account: dict[str, Any]) -> Iterator[Api]:
    """The live-frame tests talk to their own web process (see tests/conftest.py `frames_server`)."""
    yield Api(frames_server, account["key"])


CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/lib/chromium/chromium")
# Loopback host candidates without mDNS names: the page and the server share this machine.
WEBRTC_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--autoplay-policy=no-user-gesture-required",
]


@pytest.fixture
def client_page(pages: str) -> Iterator[Page]:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=WEBRTC_ARGS)
        page = browser.new_page()
        page.goto(f"{pages}/whep_client.html")
        yield page
        browser.close()


def _until(check: Callable[[], Any], timeout: float = 20, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout} s (last: {value!r})")
        time.sleep(interval)


def _viewers(session_id: str) -> int:
    """Unexpired viewer leases (the sync API of Playwright holds this thread's event loop)."""
    from enigma_site.redis import get_redis
    from sessions_app.realtime.viewers import viewers_key

    return int(get_redis().zcount(viewers_key(session_id), time.time(), "+inf"))


def test_chromium_plays_the_whep_stream_at_1024x600_and_delete_ends_it(api: Api, pages: str, client_page: Page) -> None:
    started = api.post("/start/start-session", {"startingUrl": f"{pages}/animated.html"})
    assert started.status_code == 200, started.text
    session_id, url = started.json()["sessionId"], started.json()["streaming"]["webRTCURL"]
    api.wait_session(session_id, "active")
    assert url.startswith(f"{api.base}/whep/vt_")

    answer = client_page.evaluate("url => whepPlay(url)", url)
    assert answer["status"] == 201, answer
    assert answer["contentType"].startswith("application/sdp")
    assert answer["location"].startswith(url + "/")

    state = _until(lambda: (s := client_page.evaluate("whepState()"))["frames"] > 0 and s)
    assert (state["width"], state["height"]) == (1024, 600)
    assert client_page.evaluate("whepCodec()") == "video/H264"
    before = state["frames"]
    time.sleep(2)
    grown = client_page.evaluate("whepState()")["frames"] - before
    assert grown >= 10, grown  # the page animates: frames keep coming (about 30 a second unloaded)
    assert _viewers(session_id) == 1  # the stream holds a viewer lease: the worker screencasts

    status = client_page.evaluate("async () => (await fetch(window.whep.location, {method: 'DELETE'})).status")
    assert status == 200
    _until(lambda: _viewers(session_id) == 0, timeout=10)
    stopped = client_page.evaluate("whepState()")["frames"]
    time.sleep(1.5)
    assert client_page.evaluate("whepState()")["frames"] - stopped <= 1
    again = requests.delete(answer["location"], timeout=10)
    assert again.status_code == 404 and again.json()["code"] == "WHEP_SESSION_NOT_FOUND"


def test_whep_refuses_expired_foreign_and_malformed_requests(api: Api, pages: str, client_page: Page) -> None:
    from sessions_app.models import new_id
    from sessions_app.streaming import viewer_token_create

    started = api.post("/start/start-session", {"startingUrl": f"{pages}/hello.html"})
    session_id, url = started.json()["sessionId"], started.json()["streaming"]["webRTCURL"]
    api.wait_session(session_id, "active")

    expiring = viewer_token_create(session_id=session_id, control=False, ttl_s=1)
    time.sleep(1.2)
    for token in (expiring, "vt_" + "x" * 32, viewer_token_create(session_id=new_id(), control=False)):
        refused = client_page.evaluate("url => whepPlay(url)", f"{api.base}/whep/{token}")
        assert refused["status"] == 403, refused
        assert '"INVALID_VIEWER_TOKEN"' in refused["body"]

    answer = client_page.evaluate("url => whepPlay(url)", url)
    assert answer["status"] == 201
    resource = answer["location"].rsplit("/", 1)[1]
    # Another session's token does not reach this stream's resource.
    foreign = viewer_token_create(session_id=new_id(), control=False)
    assert requests.delete(f"{api.base}/whep/{foreign}/{resource}", timeout=10).status_code == 404
    assert _viewers(session_id) == 1
    wrong_type = requests.post(url, data="v=0", headers={"Content-Type": "text/plain"}, timeout=10)
    assert wrong_type.status_code == 415 and wrong_type.json()["details"]["parameter"] == "Content-Type"
    not_sdp = requests.post(url, data="hello", headers={"Content-Type": "application/sdp"}, timeout=10)
    assert not_sdp.status_code == 400 and not_sdp.json()["code"] == "INVALID_SDP"
    assert requests.delete(answer["location"], timeout=10).status_code == 200
