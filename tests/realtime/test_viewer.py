"""The live view: frames while someone watches, the viewer page and its websocket."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import socketio
from websockets.asyncio.client import connect

from tests.conftest import Api, Proc

from .conftest import view_token, viewer_ws_url

pytestmark = pytest.mark.slow


@pytest.fixture
def api(frames_server: str, worker: Proc, account: dict[str, Any]) -> Iterator[Api]:
    """The live-frame tests talk to their own web process (see tests/conftest.py `frames_server`)."""
    yield Api(frames_server, account["key"])


def _animated_session(api: Any, pages: str) -> tuple[str, str]:
    """Start a session on the animated page; return (session id, webViewURL)."""
    response = api.post("/start/start-session", {"startingUrl": f"{pages}/animated.html"})
    assert response.status_code == 200, response.text
    body = response.json()
    api.wait_session(body["sessionId"], "active")
    return body["sessionId"], body["streaming"]["webViewURL"]


async def _next(ws: Any, kind: str, timeout: float = 10, **match: Any) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), deadline - time.monotonic()))
        if message["type"] == kind and all(message.get(k) == v for k, v in match.items()):
            return message


async def _frames_on_the_bus(session_id: str, seconds: float) -> int:
    """Count frames the worker publishes on the session's Redis channel (whether or not any
    web process listens) for a while."""
    from enigma_site.redis import get_async_redis
    from sessions_app.frames import frames_channel

    pubsub = get_async_redis().pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(frames_channel(session_id))
    count = 0
    deadline = time.monotonic() + seconds
    try:
        while (left := deadline - time.monotonic()) > 0:
            message = await pubsub.get_message(timeout=min(left, 0.2))
            count += message is not None and message["type"] == "message"
    finally:
        await pubsub.aclose()
    return count


@pytest.mark.asyncio
async def test_viewer_gets_frames_of_an_animated_page_only_while_watching(api: Any, pages: str) -> None:
    session_id, view_url = await asyncio.to_thread(_animated_session, api, pages)
    assert await _frames_on_the_bus(session_id, 1.0) == 0  # nobody watches: no screencast
    async with connect(viewer_ws_url(api.base, view_token(view_url)), max_size=None) as ws:
        hello = await _next(ws, "hello")
        assert hello["control"] is True
        first = await _next(ws, "frame")
        started = time.monotonic()
        frames = 1
        while time.monotonic() - started < 1.5:
            message = json.loads(await asyncio.wait_for(ws.recv(), 5))
            frames += message["type"] == "frame"
        assert frames >= 10, frames
        assert await _frames_on_the_bus(session_id, 1.0) >= 5  # what the counter below counts
        assert first["url"].endswith("/animated.html")
        assert first["data"][:4] == "/9j/"  # base64 of a JPEG's first bytes
    # The last viewer left: the runner stops the screencast.
    await asyncio.sleep(1.0)
    assert await _frames_on_the_bus(session_id, 1.0) == 0


@pytest.mark.asyncio
async def test_socketio_client_that_asks_for_frames_receives_them(api: Any, pages: str) -> None:
    session_id, _ = await asyncio.to_thread(_animated_session, api, pages)
    client = socketio.AsyncClient(reconnection=False)
    frames: list[dict[str, Any]] = []
    enough = asyncio.Event()

    @client.on("frame")
    async def on_frame(data: dict[str, Any]) -> None:
        frames.append(data)
        if len(frames) >= 5:
            enough.set()

    await client.connect(api.base, auth={"sessionId": session_id, "frames": True}, transports=["websocket"])
    try:
        await asyncio.wait_for(enough.wait(), 10)
        ack = await client.call("watch", False, timeout=5)
        assert ack == {"success": True, "watching": False}
    finally:
        await client.disconnect()
    assert frames[0]["sessionId"] == session_id and frames[0]["url"].endswith("/animated.html")
    assert frames[0]["title"] in ("", "Animated page")


@pytest.mark.asyncio
async def test_read_only_viewer_cannot_click_but_a_control_viewer_can(api: Any, pages: str) -> None:
    from sessions_app.streaming import viewer_token_create

    session_id, view_url = await asyncio.to_thread(_animated_session, api, pages)
    control_token = view_token(view_url)
    read_only = await asyncio.to_thread(viewer_token_create, session_id=session_id, control=False)
    # The button of animated.html spans page x 100-300, y 300-360: the window's y adds 155.
    click = {"actionType": "interaction", "action": {"type": "CLICK", "x": 200, "y": 300 + 30 + 155}}
    async with connect(viewer_ws_url(api.base, read_only), max_size=None) as ws:
        assert (await _next(ws, "hello"))["control"] is False
        await ws.send(json.dumps(click))
        error = await _next(ws, "error")
        assert error["code"] == "VIEWER_READ_ONLY"
    async with connect(viewer_ws_url(api.base, control_token), max_size=None) as ws:
        await _next(ws, "hello")
        await ws.send(json.dumps(click))
        event = await _next(ws, "event")
        while event["data"].get("source") != "human":
            event = await _next(ws, "event")
        assert event["data"]["data"]["name"] == "CLICK"
        await _next(ws, "frame", timeout=10, title="clicked")
        await ws.send(json.dumps({"actionType": "interaction", "action": {"type": "CLICK", "x": 5, "y": 100}}))
        assert (await _next(ws, "error"))["details"]["parameter"] == "message.action.y"


def test_viewer_page_renders_for_a_valid_token_only(api: Any) -> None:
    response = api.post("/start/start-session", {})
    body = response.json()
    page = api.http.get(body["streaming"]["webViewURL"], timeout=10)
    assert page.status_code == 200
    assert 'data-control="1"' in page.text and "viewer/viewer.js" in page.text
    assert body["sessionId"] not in page.text
    assert "X-Frame-Options" not in page.headers
    for forged in ("vt_forged", body["sessionId"], "forged"):
        assert api.http.get(f"{api.base}/view/{forged}", timeout=10).status_code == 403


@pytest.mark.asyncio
async def test_viewer_socket_with_a_bad_token_is_refused(server: str) -> None:
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus):
        async with connect(viewer_ws_url(server, "vt_forged")):
            pass


async def _hand_control(ws: Any, action: str) -> str:
    """Send takeOverControl / releaseControl; return the control its takeover event names."""
    await ws.send(json.dumps({"actionType": "interaction", "action": {"type": action}}))
    event = await _next(ws, "event")
    while event["data"].get("type") != "takeover":
        event = await _next(ws, "event")
    return str(event["data"]["control"])


@pytest.mark.asyncio
async def test_a_viewer_that_connects_after_a_takeover_is_told_who_has_control(api: Any, pages: str) -> None:
    """The viewer's Take over / Release control button starts from `hello`: a viewer that
    (re)connects after the takeover event has no event to learn it from."""
    _, view_url = await asyncio.to_thread(_animated_session, api, pages)
    token = view_token(view_url)
    async with connect(viewer_ws_url(api.base, token), max_size=None) as ws:
        assert (await _next(ws, "hello"))["humanControl"] is False
        assert await _hand_control(ws, "takeOverControl") == "human"
    async with connect(viewer_ws_url(api.base, token), max_size=None) as ws:
        assert (await _next(ws, "hello"))["humanControl"] is True
        assert await _hand_control(ws, "releaseControl") == "agent"
    async with connect(viewer_ws_url(api.base, token), max_size=None) as ws:
        assert (await _next(ws, "hello"))["humanControl"] is False
