"""Sockets live as long as their session, through quiet spells of any length (issue 12 item 1)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
import socketio

from .conftest import session_start, task_details

pytestmark = pytest.mark.slow


@pytest.mark.asyncio
async def test_socket_quiet_for_30_s_then_gets_the_tasks_completion(api: Any, pages: str) -> None:
    session_id = await asyncio.to_thread(session_start, api)
    client = socketio.AsyncClient(reconnection=False)
    loop = asyncio.get_running_loop()
    received: list[tuple[float, dict[str, Any]]] = []
    completed = asyncio.Event()
    disconnects: list[Any] = []

    @client.on("message")
    async def on_message(data: dict[str, Any]) -> None:
        received.append((loop.time(), data))
        if data.get("type") == "task_completed":
            completed.set()

    @client.on("disconnect")
    async def on_disconnect(reason: Any = None) -> None:
        disconnects.append(reason)

    await client.connect(api.base, auth={"sessionId": session_id}, transports=["websocket"])
    try:
        # A running task is never idle, and its waits (30 s at most each) send no event: two
        # spells of 30 s of silence, so that one late delivery of the events before a wait (a
        # loaded machine) cannot shorten both.
        response = await asyncio.to_thread(
            api.message,
            session_id,
            {
                "actionType": "newTask",
                "newState": "start",
                "taskDetails": f"go to {pages}/hello.html then wait 30 seconds then wait 30 seconds then extract the headings",
            },
        )
        task_id = response.json()["taskId"]
        await asyncio.wait_for(completed.wait(), 120)
        assert client.connected, disconnects
    finally:
        await client.disconnect()
    times = [t for t, _ in received]
    assert max(b - a for a, b in zip(times, times[1:], strict=False)) >= 29.5
    last = received[-1][1]
    assert last["type"] == "task_completed" and last["taskId"] == task_id
    assert "Hello heading" in last["data"]["message"]
    assert disconnects == ["client disconnect"], disconnects


def test_expiry_reaches_a_socket_that_connected_after_the_last_task(api: Any, pages: str, node_client: Any) -> None:
    response = api.post("/start/start-session", {"taskDetails": task_details(pages)})
    assert response.status_code == 200, response.text
    body = response.json()
    session_id = body["sessionId"]
    assert api.wait_task(session_id, body["taskId"])["status"] == "complete"
    idle_s = float(os.environ["ENIGMA_INACTIVITY_TIMEOUT_S"])
    outcome = node_client(
        {"url": api.base, "sessionId": session_id, "scenario": "listen", "timeoutMs": int((idle_s + 20) * 1000)},
        timeout=idle_s + 30,
    )
    assert not outcome.get("timeout") and not outcome.get("connectError"), outcome
    ended = [r["data"] for r in outcome["received"] if r["name"] == "end_session"]
    assert ended and ended[0]["reason"] == "expired", outcome
    assert outcome["disconnectReason"] == "io server disconnect"


def _kill_blocked_receivers() -> int:
    """Cut every connection blocked in the channel layer's receive (BZPOPMIN): the fault a Redis
    failover or a network blip gives a waiting socket. Returns how many were cut."""
    from enigma_site.redis import get_redis

    redis = get_redis()
    killed = 0
    for client in redis.client_list():
        if client.get("cmd") == "bzpopmin":
            killed += int(redis.execute_command("CLIENT", "KILL", "ID", client["id"]))
    return killed


@pytest.mark.asyncio
async def test_a_redis_connection_cut_does_not_end_a_socket_nor_lose_events(api: Any, pages: str) -> None:
    session_id = await asyncio.to_thread(session_start, api)
    client = socketio.AsyncClient(reconnection=False)
    ids: list[int] = []
    completed = asyncio.Event()
    disconnects: list[Any] = []

    @client.on("message")
    async def on_message(data: dict[str, Any]) -> None:
        ids.append(data["eventId"])
        if data.get("type") == "task_completed":
            completed.set()

    @client.on("disconnect")
    async def on_disconnect(reason: Any = None) -> None:
        disconnects.append(reason)

    await client.connect(api.base, auth={"sessionId": session_id}, transports=["websocket"])
    try:
        last = (await asyncio.to_thread(api.get, f"/sessions/{session_id}/events?after=0")).json()["lastEventId"]
        killed = 0
        for _ in range(50):  # until the socket's pump is blocked in Redis
            killed = await asyncio.to_thread(_kill_blocked_receivers)
            if killed:
                break
            await asyncio.sleep(0.1)
        assert killed
        await asyncio.to_thread(
            api.message, session_id, {"actionType": "newTask", "newState": "start", "taskDetails": task_details(pages)}
        )
        await asyncio.wait_for(completed.wait(), 30)
        assert client.connected, disconnects
    finally:
        await client.disconnect()
    log = (await asyncio.to_thread(api.get, f"/sessions/{session_id}/events?after={last}")).json()["events"]
    assert ids == [e["id"] for e in log][: len(ids)] and len(ids) == len(log)
