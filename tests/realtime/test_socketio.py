"""Socket.IO (api.md §3) with the official clients: python-socketio and npm socket.io-client."""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from typing import Any

import pytest
import requests
import socketio

from .conftest import session_start, task_details

pytestmark = pytest.mark.slow


def _in_order(events: list[dict[str, Any]], task_id: str) -> list[str]:
    return [e["type"] for e in events if e.get("taskId") == task_id]


@pytest.mark.asyncio
async def test_python_client_receives_task_events_in_order(api: Any, pages: str) -> None:
    session_id = await asyncio.to_thread(session_start, api)
    client = socketio.AsyncClient(reconnection=False)
    events: list[dict[str, Any]] = []
    completed = asyncio.Event()

    @client.on("message")
    async def on_message(data: dict[str, Any]) -> None:
        events.append(data)
        if data.get("type") == "task_completed":
            completed.set()

    await client.connect(api.base, auth={"sessionId": session_id}, transports=["websocket"])
    try:
        response = await asyncio.to_thread(
            api.message, session_id, {"actionType": "newTask", "newState": "start", "taskDetails": task_details(pages)}
        )
        task_id = response.json()["taskId"]
        await asyncio.wait_for(completed.wait(), 30)
    finally:
        await client.disconnect()
    kinds = _in_order(events, task_id)
    assert kinds[0] == "task_started"
    assert kinds[-1] == "task_completed"
    assert "agent" in kinds and "action" in kinds
    assert "Hello heading" in events[-1]["data"]["message"]
    ids = [e["eventId"] for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


@pytest.mark.asyncio
async def test_python_client_with_a_foreign_api_key_is_refused(api: Any) -> None:
    from accounts.services import api_key_create, personal_team, user_create

    session_id = await asyncio.to_thread(session_start, api)

    def other_key() -> str:
        user = user_create(email=f"other{secrets.token_hex(4)}@example.com", password="pw-123456789")
        return api_key_create(team=personal_team(user), user=user, name="other").raw

    foreign = await asyncio.to_thread(other_key)
    client = socketio.AsyncClient(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(api.base, auth={"sessionId": session_id, "apiKey": foreign}, transports=["websocket"])
    await client.connect(api.base, auth={"sessionId": session_id, "apiKey": api.key}, transports=["websocket"])
    assert client.connected
    await client.disconnect()


@pytest.mark.asyncio
async def test_invalid_socket_message_comes_back_as_an_error_event(api: Any) -> None:
    session_id = await asyncio.to_thread(session_start, api)
    client = socketio.AsyncClient(reconnection=False)
    errors: list[dict[str, Any]] = []
    got = asyncio.Event()

    @client.on("message")
    async def on_message(data: dict[str, Any]) -> None:
        if data.get("type") == "error":
            errors.append(data)
            got.set()

    await client.connect(api.base, auth={"sessionId": session_id, "apiKey": api.key}, transports=["websocket"])
    ack = await client.call(
        "message", {"actionType": "interaction", "action": {"type": "CLICK", "x": 10, "y": 20}}, timeout=10
    )
    await asyncio.wait_for(got.wait(), 10)
    await client.disconnect()
    assert ack["success"] is False and ack["code"] == "INVALID_PARAMETER"
    assert errors[0]["code"] == "INVALID_PARAMETER"
    assert errors[0]["details"]["parameter"] == "message.action.y"


def test_node_client_runs_a_task_and_gets_events_in_order(api: Any, pages: str, node_client: Any) -> None:
    session_id = session_start(api)
    outcome = node_client(
        {
            "url": api.base,
            "sessionId": session_id,
            "apiKey": api.key,
            "scenario": "task",
            "taskDetails": task_details(pages),
        }
    )
    assert not outcome.get("timeout") and not outcome.get("connectError"), outcome
    messages = [r["data"] for r in outcome["received"] if r["name"] == "message"]
    kinds = _in_order(messages, outcome["taskId"])
    assert kinds[0] == "task_started" and kinds[-1] == "task_completed"
    assert kinds.index("agent") < kinds.index("task_completed")
    assert kinds.index("action") < kinds.index("task_completed")


def test_node_client_with_unknown_session_gets_connect_error(server: str, node_client: Any) -> None:
    outcome = node_client({"url": server, "sessionId": secrets.token_hex(16), "scenario": "unknown"})
    assert outcome["connectError"]["data"]["code"] == "SESSION_NOT_FOUND"


def test_node_client_terminate_emit_gives_end_session(api: Any, node_client: Any) -> None:
    session_id = session_start(api)
    outcome = node_client(
        {"url": api.base, "sessionId": session_id, "apiKey": api.key, "socketApiKey": True, "scenario": "terminate"}
    )
    by_name = {r["name"]: r["data"] for r in outcome["received"]}
    assert by_name["ack-invalid"]["code"] == "INVALID_PARAMETER"
    assert by_name["ack"] == {"success": True, "message": "Message sent successfully"}
    assert by_name["end_session"]["reason"] == "terminated"
    assert outcome["disconnectReason"] == "io server disconnect"
    assert api.get(f"/sessions/{session_id}").json()["state"] == "terminated"
    # An ended session can no longer be joined.
    again = node_client({"url": api.base, "sessionId": session_id, "scenario": "unknown"})
    assert again["connectError"]["data"]["code"] == "SESSION_NOT_FOUND"
    assert again["connectError"]["data"]["details"] == {"state": "terminated", "reason": "terminated"}


def test_node_client_that_reconnects_with_last_event_id_misses_nothing(api: Any, pages: str, node_client: Any) -> None:
    session_id = session_start(api)
    outcome = node_client(
        {
            "url": api.base,
            "sessionId": session_id,
            "apiKey": api.key,
            "scenario": "reconnect",
            "taskDetails": task_details(pages),
        }
    )
    assert not outcome.get("timeout"), outcome
    names = [r["name"] for r in outcome["received"]]
    dropped_at = names.index("dropped")
    got = [r["data"]["eventId"] for r in outcome["received"] if r["name"] in ("message", "end_session")]
    first = got[0]
    expected = [e["id"] for e in outcome["log"] if e["id"] >= first]
    assert got == expected  # everything, in order, no duplicates
    missed = [r for r in outcome["received"][dropped_at + 1 :] if r["name"] == "message"]
    assert missed and missed[-1]["data"]["type"] == "task_completed"


def test_polling_transport_gets_a_clear_error(server: str) -> None:
    response = requests.get(f"{server}/socket.io/?EIO=4&transport=polling", timeout=10)
    assert response.status_code == 400
    assert response.json()["code"] == "TRANSPORT_NOT_SUPPORTED"


@pytest.mark.asyncio
async def test_active_sockets_lists_open_connections(api: Any) -> None:
    session_id = await asyncio.to_thread(session_start, api)
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(api.base, auth={"sessionId": session_id}, transports=["websocket"])
    try:
        body = (await asyncio.to_thread(api.get, "/start/active-sockets")).json()
        assert body["success"] is True
        sid = client.get_sid("/")
        assert sid in body["sockets"] and body["count"] == len(body["sockets"])
    finally:
        await client.disconnect()
    await asyncio.sleep(0.3)
    after = (await asyncio.to_thread(api.get, "/start/active-sockets")).json()
    assert sid not in after["sockets"]


def _hold_the_task_table(seconds: float, held: threading.Event) -> None:
    """Keep the tasks table locked against writes for `seconds` (a slow write elsewhere)."""
    from django.db import connection

    settings_dict = connection.settings_dict
    raw: Any
    if connection.vendor == "sqlite":
        import sqlite3

        raw = sqlite3.connect(settings_dict["NAME"], isolation_level=None)
        raw.execute("BEGIN IMMEDIATE")
    else:
        import psycopg

        raw = psycopg.connect(
            dbname=settings_dict["NAME"],
            user=settings_dict.get("USER") or None,
            password=settings_dict.get("PASSWORD") or None,
            host=settings_dict.get("HOST") or "127.0.0.1",
            port=settings_dict.get("PORT") or 5432,
        )
        raw.execute("LOCK TABLE sessions_app_task IN EXCLUSIVE MODE")
    held.set()
    time.sleep(seconds)
    raw.rollback()
    raw.close()


@pytest.mark.asyncio
async def test_one_sockets_slow_write_does_not_hold_up_another_sockets_connect(api: Any, pages: str) -> None:
    # Every socket's database step ran on one thread per web process: a message waiting on a
    # lock held the connect (and the replay, hence the live events) of every other socket.
    session_id = await asyncio.to_thread(session_start, api)
    writer = socketio.AsyncClient(reconnection=False)
    await writer.connect(api.base, auth={"sessionId": session_id, "apiKey": api.key}, transports=["websocket"])
    held = threading.Event()
    lock = asyncio.ensure_future(asyncio.to_thread(_hold_the_task_table, 4.0, held))
    await asyncio.to_thread(held.wait, 10)
    # A new task is a write to the tasks table: it waits for the lock.
    answer = asyncio.ensure_future(
        writer.call("message", {"actionType": "newTask", "taskDetails": task_details(pages)}, timeout=30)
    )
    await asyncio.sleep(0.5)
    reader = socketio.AsyncClient(reconnection=False)
    started = time.monotonic()
    await reader.connect(api.base, auth={"sessionId": session_id}, transports=["websocket"], wait_timeout=15)
    connect_s = time.monotonic() - started
    await lock
    ack = await answer
    await reader.disconnect()
    await writer.disconnect()
    assert ack["success"] is True, ack
    assert connect_s < 1.5, f"the connect waited {connect_s:.1f} s behind another socket's write"
