"""What a socket may do is what its credential grants (issue 13 items 2, 12, 13): the API key
everything, a viewer token watch (and interact if it grants control), the session id alone watch
only; viewers never see the session id; socket messages share REST's rate limit; the socket
list is per team."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import zlib
from typing import Any

import pytest
import requests
import socketio
from websockets.asyncio.client import connect

from .conftest import session_start, task_details, view_token, viewer_ws_url

pytestmark = pytest.mark.slow

CLICK = {"actionType": "interaction", "action": {"type": "CLICK", "x": 200, "y": 400}}
TYPE = {"actionType": "interaction", "action": {"type": "TYPE", "text": "hello"}}
TAKEOVER = {"actionType": "interaction", "action": {"type": "takeOverControl"}}
TERMINATE = {"actionType": "state", "newState": "terminate"}


def _new_task(pages: str) -> dict[str, Any]:
    return {"actionType": "newTask", "taskDetails": task_details(pages)}


def _viewer_token(session_id: str, control: bool) -> str:
    from sessions_app.streaming import viewer_token_create

    return viewer_token_create(session_id=session_id, control=control)


def _decodings(token: str) -> list[bytes]:
    """Every way a token's parts decode (base64, zlib), to look for what it hides."""
    found = [token.encode()]
    for part in token.replace(":", ".").split("."):
        try:
            raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        except (binascii.Error, ValueError):
            continue
        found.append(raw)
        try:
            found.append(zlib.decompress(raw))
        except zlib.error:
            pass
    return found


async def _sio(base: str, auth: dict[str, Any], **handlers: Any) -> socketio.AsyncClient:
    client = socketio.AsyncClient(reconnection=False)
    for name, handler in handlers.items():
        client.on(name, handler)
    await client.connect(base, auth=auth, transports=["websocket"])
    return client


async def _ws_error(ws: Any, message: dict[str, Any]) -> dict[str, Any]:
    await ws.send(json.dumps(message))
    while True:
        received = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if received["type"] == "error":
            return received


def _nothing_happened(api: Any, session_id: str) -> None:
    detail = api.get(f"/sessions/{session_id}").json()
    assert detail["state"] == "active" and detail["tasks"] == [] and detail["humanControl"] is False
    events = api.get(f"/sessions/{session_id}/events?after=0").json()["events"]
    assert not [e for e in events if (e["data"].get("data") or {}).get("source") == "human"], events


@pytest.mark.asyncio
async def test_read_only_viewer_token_cannot_click_type_or_create_tasks_by_any_path(api: Any, pages: str) -> None:
    session_id = await asyncio.to_thread(session_start, api)
    link = (await asyncio.to_thread(api.post, f"/sessions/{session_id}/viewer-links", {"ttlSeconds": 600})).json()
    assert link["control"] is False and session_id not in link["webViewURL"]
    read_only = view_token(link["webViewURL"])
    page = await asyncio.to_thread(api.http.get, link["webViewURL"], timeout=10)
    assert 'data-control="0"' in page.text and "View only" in page.text
    attempts = [CLICK, TYPE, TAKEOVER, _new_task(pages), TERMINATE]

    client = await _sio(api.base, {"token": read_only})
    try:
        for message in attempts:
            ack = await client.call("message", message, timeout=10)
            assert ack["success"] is False and ack["code"] == "VIEWER_READ_ONLY", (message, ack)
    finally:
        await client.disconnect()

    async with connect(viewer_ws_url(api.base, read_only), max_size=None) as ws:
        hello = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert hello["type"] == "hello" and hello["control"] is False
        for message in attempts:
            assert (await _ws_error(ws, message))["code"] == "VIEWER_READ_ONLY", message

    writes: list[tuple[str, dict[str, Any]]] = [
        ("/start/send-message", {"sessionId": session_id, "message": _new_task(pages)}),
        ("/start/send-message", {"sessionId": session_id, "message": CLICK}),
        ("/start/run-task", {"taskDetails": task_details(pages)}),
    ]
    for path, body in writes:
        as_bearer = await asyncio.to_thread(
            requests.post, api.base + path, json=body, timeout=10, headers={"Authorization": f"Bearer {read_only}"}
        )
        as_query = await asyncio.to_thread(requests.post, f"{api.base}{path}?token={read_only}", json=body, timeout=10)
        assert as_bearer.status_code == 401 and as_query.status_code == 401, (path, as_bearer.text)

    await asyncio.to_thread(_nothing_happened, api, session_id)


@pytest.mark.asyncio
async def test_control_viewer_token_may_interact_but_not_run_tasks_or_terminate(api: Any, pages: str) -> None:
    session_id = await asyncio.to_thread(session_start, api)
    control = await asyncio.to_thread(_viewer_token, session_id, True)
    client = await _sio(api.base, {"token": control})
    try:
        for message in (_new_task(pages), TERMINATE):
            ack = await client.call("message", message, timeout=10)
            assert ack["code"] == "VIEWER_MESSAGE_NOT_ALLOWED", (message, ack)
        assert await client.call("message", TAKEOVER, timeout=10) == {
            "success": True,
            "message": "Message sent successfully",
        }
    finally:
        await client.disconnect()
    detail = await asyncio.to_thread(api.wait_session, session_id, "active")
    assert detail["tasks"] == []
    deadline = asyncio.get_running_loop().time() + 10
    while not (await asyncio.to_thread(api.get, f"/sessions/{session_id}")).json()["humanControl"]:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.1)


@pytest.mark.asyncio
async def test_session_id_alone_may_watch_but_not_send(api: Any, pages: str) -> None:
    session_id = await asyncio.to_thread(session_start, api)
    completed = asyncio.Event()

    async def on_message(data: dict[str, Any]) -> None:
        if data.get("type") == "task_completed":
            completed.set()

    client = await _sio(api.base, {"sessionId": session_id}, message=on_message)
    try:
        for message in (_new_task(pages), TERMINATE, CLICK, TYPE, TAKEOVER):
            ack = await client.call("message", message, timeout=10)
            assert ack["code"] == "API_KEY_REQUIRED", (message, ack)
        await asyncio.to_thread(_nothing_happened, api, session_id)
        # What seed 003's example does with such a socket still works: it hears the results.
        await asyncio.to_thread(api.message, session_id, _new_task(pages))
        await asyncio.wait_for(completed.wait(), 30)
    finally:
        await client.disconnect()


@pytest.mark.asyncio
async def test_a_viewer_is_never_given_the_session_id(api: Any, pages: str) -> None:
    response = await asyncio.to_thread(api.post, "/start/start-session", {"startingUrl": f"{pages}/animated.html"})
    body = response.json()
    session_id, view_url = body["sessionId"], body["streaming"]["webViewURL"]
    await asyncio.to_thread(api.wait_session, session_id, "active")
    token = view_token(view_url)
    assert session_id not in view_url
    assert not [raw for raw in _decodings(token) if session_id.encode() in raw]
    page = await asyncio.to_thread(api.http.get, view_url, timeout=10)
    assert page.status_code == 200 and session_id not in page.text

    seen: list[Any] = []
    done = asyncio.Event()

    async def on_any(data: Any) -> None:
        seen.append(data)
        if isinstance(data, dict) and data.get("type") == "task_completed":
            done.set()

    client = await _sio(api.base, {"token": token, "frames": True}, message=on_any, frame=on_any)
    try:
        async with connect(viewer_ws_url(api.base, token), max_size=None) as ws:
            await asyncio.to_thread(api.message, session_id, _new_task(pages))
            await asyncio.wait_for(done.wait(), 30)
            seen.append(await client.call("message", {"actionType": "bogus"}, timeout=10))
            while True:
                try:
                    seen.append(json.loads(await asyncio.wait_for(ws.recv(), 1)))
                except TimeoutError:
                    break
    finally:
        await client.disconnect()
    kinds = {m.get("type") for m in seen if isinstance(m, dict)}
    assert {"hello", "frame", "event", "task_completed", "error"} <= kinds, kinds
    assert session_id not in json.dumps(seen)


@pytest.mark.asyncio
async def test_socket_messages_share_the_teams_send_message_rate_limit(api: Any) -> None:
    from django.conf import settings

    limit = settings.ENIGMA_RATE_LIMITS["send-message"]
    session_id = await asyncio.to_thread(session_start, api)
    client = await _sio(api.base, {"sessionId": session_id, "apiKey": api.key})
    try:
        codes = [
            (await client.call("message", {"actionType": "state", "newState": "bogus"}, timeout=10))["code"]
            for _ in range(limit + 1)
        ]
    finally:
        await client.disconnect()
    assert codes == ["INVALID_PARAMETER"] * limit + ["RATE_LIMIT_EXCEEDED"]
    rest = await asyncio.to_thread(api.message, session_id, {"actionType": "state", "newState": "pause"})
    assert rest.status_code == 429 and rest.json()["code"] == "RATE_LIMIT_EXCEEDED"


@pytest.mark.asyncio
async def test_active_sockets_needs_a_key_and_lists_only_the_teams_sockets(api: Any) -> None:
    from accounts.services import api_key_create, personal_team, user_create

    def other_key() -> str:
        user = user_create(email="sockets-other@example.com", password="pw-123456789")
        return api_key_create(team=personal_team(user), user=user, name="other").raw

    session_id = await asyncio.to_thread(session_start, api)
    client = await _sio(api.base, {"sessionId": session_id})
    try:
        sid = client.get_sid("/")
        anonymous = await asyncio.to_thread(requests.get, api.base + "/start/active-sockets", timeout=10)
        assert anonymous.status_code == 401
        mine = (await asyncio.to_thread(api.get, "/start/active-sockets")).json()
        assert mine["sockets"] == [sid] and mine["count"] == 1
        key = await asyncio.to_thread(other_key)
        theirs = (
            await asyncio.to_thread(
                requests.get, api.base + "/start/active-sockets", timeout=10, headers={"Authorization": f"Bearer {key}"}
            )
        ).json()
        assert theirs["sockets"] == [] and theirs["count"] == 0
    finally:
        await client.disconnect()


def test_viewer_links_are_minted_for_the_teams_own_sessions_only(api: Any) -> None:
    from accounts.services import api_key_create, personal_team, user_create

    session_id = session_start(api)
    control = api.post(f"/sessions/{session_id}/viewer-links", {"control": True}).json()
    assert control["control"] is True and api.http.get(control["webViewURL"], timeout=10).status_code == 200
    bad = api.post(f"/sessions/{session_id}/viewer-links", {"control": "yes"})
    assert bad.status_code == 400 and bad.json()["details"]["parameter"] == "control"
    assert api.post(f"/sessions/{session_id}/viewer-links", {"ttlSeconds": 10**9}).status_code == 400
    user = user_create(email="links-other@example.com", password="pw-123456789")
    other = api_key_create(team=personal_team(user), user=user, name="other").raw
    foreign = requests.post(
        f"{api.base}/sessions/{session_id}/viewer-links",
        json={},
        timeout=10,
        headers={"Authorization": f"Bearer {other}"},
    )
    assert foreign.status_code == 404 and foreign.json()["code"] == "SESSION_NOT_FOUND"
