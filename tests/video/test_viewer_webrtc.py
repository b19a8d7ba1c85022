"""The embeddable viewer (`webViewURL`) in a real Chromium: video over WebRTC from the session's
WHEP endpoint when it can, JPEG frames from the socket when it cannot, and clicks of a control
token over the socket either way."""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.conftest import Api, Proc
from tests.video.test_whep_browser import CHROMIUM, WEBRTC_ARGS, _until, _viewers

pytestmark = pytest.mark.slow


@pytest.fixture
def api(frames_server: str, worker: Proc, account: dict[str, Any]) -> Iterator[Api]:
    """The live-frame tests talk to their own web process (see tests/conftest.py `frames_server`)."""
    yield Api(frames_server, account["key"])


NO_WEBRTC = "delete window.RTCPeerConnection; delete window.webkitRTCPeerConnection;"


@pytest.fixture
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=WEBRTC_ARGS)
        yield browser
        browser.close()


def _viewer(browser: Browser, url: str, *, init_script: str = "") -> Page:
    page = browser.new_page(viewport={"width": 1024, "height": 600})  # scale 1: page px = window px
    _keep_trail(page)
    if init_script:
        page.add_init_script(init_script)
    page.goto(url)
    return page


def _keep_trail(page: Page) -> None:
    """What the viewer did (its console, its WHEP requests), for the message of a failed wait."""
    trail: list[str] = []

    def response(answer: Any) -> None:
        if "/whep/" in answer.url:
            trail.append(f"{answer.request.method} whep {answer.status}")

    page.on("console", lambda message: trail.append(f"console {message.type}: {message.text}"))
    page.on("response", response)
    page.on("requestfailed", lambda request: trail.append(f"failed {request.method} {request.url}: {request.failure}"))
    page.trail = trail  # type: ignore[attr-defined]


def _playing_webrtc(page: Page, timeout: float, *, api: Api, session_id: str) -> dict[str, Any]:
    """Wait until the viewer plays WebRTC video. Meanwhile a key press every few seconds keeps
    the session from expiring (watching is not activity, and the tests' inactivity timeout is
    12 s): on a loaded machine a first try can fail and the next one comes 2-4 s after it."""
    last_press = [time.monotonic()]

    def playing() -> dict[str, Any] | bool:
        if time.monotonic() - last_press[0] > 4:
            last_press[0] = time.monotonic()
            pressed = api.message(
                session_id, {"actionType": "interaction", "action": {"type": "KEY_PRESS", "key": "Escape"}}
            )
            assert pressed.status_code == 200, pressed.text
        media = _media(page)
        return media["media"] == "webrtc" and media["frames"] > 0 and media

    try:
        return _until(playing, timeout=timeout)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; media {_media(page)}; trail {page.trail}") from None  # type: ignore[attr-defined]


def _jpeg_frames_shown(page: Page) -> dict[str, Any] | None:
    """The viewer's media state once it shows JPEG frames, else None."""
    media = _media(page)
    return media if media["img"].startswith("data:image/jpeg;base64,") else None


def _media(page: Page) -> dict[str, Any]:
    return page.evaluate("""() => {
      const v = document.getElementById('video'), f = document.getElementById('frame');
      const q = v.getVideoPlaybackQuality();
      return {media: document.getElementById('window').dataset.media || '', width: v.videoWidth,
              height: v.videoHeight, frames: q.totalVideoFrames, videoShown: v.classList.contains('shown'),
              imgShown: !f.hidden, img: (f.getAttribute('src') || '').slice(0, 30),
              title: document.getElementById('title').textContent};
    }""")


def _animated(api: Api, pages: str) -> tuple[str, str]:
    started = api.post("/start/start-session", {"startingUrl": f"{pages}/animated.html"})
    assert started.status_code == 200, started.text
    body = started.json()
    api.wait_session(body["sessionId"], "active")
    return body["sessionId"], body["streaming"]["webViewURL"]


def _click_the_button(page: Page) -> None:
    # The button of animated.html spans page x 100-300, y 300-360.
    page.locator("#page").click(position={"x": 200, "y": 330})
    _until(lambda: _media(page)["title"] == "clicked", timeout=15)


def test_viewer_plays_webrtc_video_and_clicks_still_work(api: Api, pages: str, browser: Browser) -> None:
    session_id, view_url = _animated(api, pages)
    page = _viewer(browser, view_url)
    state = _playing_webrtc(page, timeout=40, api=api, session_id=session_id)
    assert (state["width"], state["height"]) == (1024, 600)
    assert state["videoShown"] and not state["imgShown"]
    html = page.content()
    assert session_id not in html
    assert 'data-whep="/whep/vt_' in html
    before = state["frames"]
    page.wait_for_timeout(1500)
    assert _media(page)["frames"] - before >= 5  # the page animates: the video keeps decoding
    _click_the_button(page)
    assert _media(page)["media"] == "webrtc"
    page.close()  # pagehide: the viewer DELETEs its WHEP resource; the socket's lease goes too
    _until(lambda: _viewers(session_id) == 0, timeout=35)


def test_viewer_falls_back_to_frames_without_webrtc_or_when_whep_fails(api: Api, pages: str, browser: Browser) -> None:
    no_rtc = _viewer(browser, _animated(api, pages)[1], init_script=NO_WEBRTC)
    refused = browser.new_page(viewport={"width": 1024, "height": 600})
    refused.route("**/whep/**", lambda route: route.fulfill(status=503, body="down"))
    refused.goto(_animated(api, pages)[1])
    for page in (no_rtc, refused):  # a session each: a click on one must not show on the other
        state = _until(functools.partial(_jpeg_frames_shown, page))
        assert state["imgShown"] and not state["videoShown"] and state["media"] != "webrtc"
        _click_the_button(page)
    assert _media(refused)["frames"] == 0


def test_viewer_tries_webrtc_again_after_a_passing_failure_but_not_after_a_refusal(
    api: Api, pages: str, browser: Browser
) -> None:
    session_id, view_url = _animated(api, pages)
    posts: dict[str, list[int]] = {"busy": [], "refused": []}

    def busy_once(route: Any) -> None:
        if route.request.method != "POST":
            route.continue_()
        elif not posts["busy"]:
            posts["busy"].append(503)
            route.fulfill(status=503, body="busy")
        else:
            posts["busy"].append(0)
            route.continue_()

    def refused(route: Any) -> None:
        posts["refused"].append(403)
        route.fulfill(status=403, content_type="application/json", body='{"error": "expired"}')

    busy = browser.new_page(viewport={"width": 1024, "height": 600})
    _keep_trail(busy)
    busy.route("**/whep/**", busy_once)
    expired = browser.new_page(viewport={"width": 1024, "height": 600})
    expired.route("**/whep/**", refused)
    expired.goto(view_url)
    busy.goto(view_url)
    _playing_webrtc(busy, timeout=40, api=api, session_id=session_id)  # the 503 showed frames, the next try plays
    # The 503 was tried again; a later try may also fail for a passing reason (no picture in
    # 10 s on a loaded machine) and is tried again too, until one plays.
    assert posts["busy"][0] == 503 and set(posts["busy"][1:]) == {0}, posts
    assert _jpeg_frames_shown(expired)
    assert posts["refused"] == [403]  # a refusal is not asked again
