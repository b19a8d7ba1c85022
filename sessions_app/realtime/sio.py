"""The Socket.IO v4 server (api.md §3), mounted at /socket.io/ by enigma_site.asgi.

python-socketio speaks the protocol; this module binds it to our sessions. Each connected
socket gets its own channel-layer channel in the session's event group (so events from any
worker reach it on any web process), replays the log after `auth.lastEventId` before live
events, and, when it asks for frames (`auth.frames` or `emit("watch")`), a second channel in the
session's frame group plus a viewer lease that keeps the screencast running.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

import socketio
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from enigma_site.errors import ApiError
from enigma_site.redis import get_async_redis

from ..events import events_after, group_name
from ..runner import frames_group
from .access import error_payload, socket_message_apply, socket_session_authorize
from .viewers import ViewerLease

logger = logging.getLogger(__name__)

REPLAY_PAGE = 500
STALE_FRAME_S = 0.5
ACTIVE_SOCKETS_KEY = "enigma:sockets"
# Events after which a watching client asks the (possibly new) runner to start frames again.
RUNNER_STARTED = {"session_active", "instance:reconnected"}

_clients: dict[str, SocketClient] = {}


class _Manager(socketio.AsyncManager):
    """Tells a client when the CONNECT packet has gone out, so nothing is emitted before it."""

    async def connect(self, sid: str, namespace: str) -> str:
        sid = await super().connect(sid, namespace)
        client = _clients.get(sid)
        if client is not None:
            client.ready.set()
        return sid


sio = socketio.AsyncServer(
    async_mode="asgi",
    transports=["websocket"],
    # No cookies are involved: the session id (or API key) in `auth` is the credential.
    cors_allowed_origins="*",
    client_manager=_Manager(),
    logger=False,
    engineio_logger=False,
)


def _last_event_id(auth: dict[str, Any]) -> int | None:
    value = auth.get("lastEventId")
    if value is None or value == "":
        return None
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return None


class SocketClient:
    """One connected socket: its channels, its pumps and its viewer lease."""

    def __init__(self, sid: str, session_id: str, last_event_id: int | None) -> None:
        self.sid = sid
        self.session_id = session_id
        self.last_event_id = last_event_id
        self.ready = asyncio.Event()
        self.layer = get_channel_layer()
        self.events_channel = ""
        self.frames_channel = ""
        self.lease = ViewerLease(session_id)
        self.events_task: asyncio.Task[None] | None = None
        self.frames_task: asyncio.Task[None] | None = None
        self.closed = False

    async def open(self) -> None:
        # Join before reading the log: an event stored meanwhile arrives on both paths and is
        # dropped once by id, never lost between them.
        self.events_channel = await self.layer.new_channel("sio.")
        await self.layer.group_add(group_name(self.session_id), self.events_channel)
        self.events_task = asyncio.create_task(self._pump_events())

    async def watch(self, on: bool) -> None:
        if on and not self.frames_channel:
            self.frames_channel = await self.layer.new_channel("sio.")
            await self.layer.group_add(frames_group(self.session_id), self.frames_channel)
            self.frames_task = asyncio.create_task(self._pump_frames(self.frames_channel))
            await self.lease.start()
        elif not on and self.frames_channel:
            await self._unwatch()

    async def _unwatch(self) -> None:
        channel, self.frames_channel = self.frames_channel, ""
        task, self.frames_task = self.frames_task, None
        if task is not None:
            task.cancel()
        if channel:
            await self.layer.group_discard(frames_group(self.session_id), channel)
        await self.lease.stop()

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.events_task is not None and self.events_task is not asyncio.current_task():
            self.events_task.cancel()
        with contextlib.suppress(Exception):
            await self.layer.group_discard(group_name(self.session_id), self.events_channel)
        with contextlib.suppress(Exception):
            await self._unwatch()

    async def _emit(self, name: str, payload: dict[str, Any], event_id: int) -> None:
        await sio.emit(name, {**payload, "eventId": event_id}, to=self.sid)
        if name == "end_session":
            # The session is over: close the socket the way api.md §2.2 (terminate) says.
            # A short pause lets the end_session packet leave first.
            await asyncio.sleep(0.05)
            await sio.disconnect(self.sid)
        elif payload.get("type") in RUNNER_STARTED or name in RUNNER_STARTED:
            await self.lease.nudge()

    async def _pump_events(self) -> None:
        try:
            await asyncio.wait_for(self.ready.wait(), timeout=30)
            replayed: set[int] = set()
            after = self.last_event_id
            while after is not None:
                rows = await database_sync_to_async(events_after)(
                    session_id=self.session_id, after=after, limit=REPLAY_PAGE)
                for row in rows:
                    replayed.add(row["id"])
                    await self._emit(row["name"], row["data"], row["id"])
                    if self.closed:
                        return
                after = rows[-1]["id"] if len(rows) == REPLAY_PAGE else None
            while True:
                message = await self.layer.receive(self.events_channel)
                if message.get("id") in replayed:
                    continue
                await self._emit(message["name"], message["payload"], message["id"])
                if self.closed:
                    return
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("event pump of socket %s (session %s) failed", self.sid, self.session_id)
            await sio.disconnect(self.sid)

    async def _pump_frames(self, channel: str) -> None:
        await self.ready.wait()
        while True:
            message = await self.layer.receive(channel)
            # Backpressure: a frame that waited too long is stale; skip it so a slow client
            # gets the newest picture instead of a growing backlog.
            if time.time() - float(message.get("sentAt") or 0) > STALE_FRAME_S:
                continue
            frame = {k: v for k, v in message.items() if k != "type"}
            await sio.emit("frame", frame, to=self.sid)


@sio.event
async def connect(sid: str, environ: dict[str, Any], auth: Any) -> None:
    try:
        session = await database_sync_to_async(socket_session_authorize)(auth)
    except ApiError as exc:
        raise socketio.exceptions.ConnectionRefusedError(
            exc.message, {"code": exc.code, "details": exc.details}) from None
    client = SocketClient(sid, session.pk, _last_event_id(auth))
    _clients[sid] = client
    await get_async_redis().sadd(ACTIVE_SOCKETS_KEY, sid)
    try:
        await client.open()
        if auth.get("frames"):
            await client.watch(True)
    except Exception:
        _clients.pop(sid, None)
        await client.close()
        raise


@sio.event
async def disconnect(sid: str, reason: Any = None) -> None:
    client = _clients.pop(sid, None)
    await get_async_redis().srem(ACTIVE_SOCKETS_KEY, sid)
    if client is not None:
        await client.close()


@sio.on("message")
async def on_message(sid: str, data: Any = None) -> dict[str, Any]:
    """A client's emit("message", m): the same message and validation as send-message. The
    acknowledgement (if asked for) is the REST body; errors also arrive as an `error` message."""
    client = _clients.get(sid)
    if client is None:
        return {"success": False, "code": "SESSION_NOT_FOUND", "error": "Not connected to a session"}
    if isinstance(data, str):
        with contextlib.suppress(ValueError):
            data = json.loads(data)
    try:
        return await database_sync_to_async(socket_message_apply)(session_id=client.session_id, raw=data)
    except ApiError as exc:
        body = error_payload(exc)
    except Exception:
        logger.exception("socket message of session %s failed", client.session_id)
        body = {"type": "error", "error": "Internal server error", "code": "INTERNAL_ERROR", "details": {}}
    await sio.emit("message", body, to=sid)
    return {"success": False, "message": body["error"], **body}


@sio.on("watch")
async def on_watch(sid: str, data: Any = True) -> dict[str, Any]:
    """emit("watch") starts `frame` events for this socket; emit("watch", false) stops them."""
    client = _clients.get(sid)
    if client is None:
        return {"success": False}
    on = data.get("on", True) if isinstance(data, dict) else data is not False
    await client.watch(bool(on))
    return {"success": True, "watching": bool(on)}


@sio.on("unwatch")
async def on_unwatch(sid: str, data: Any = None) -> dict[str, Any]:
    return await on_watch(sid, False)


_engine_app = socketio.ASGIApp(sio, socketio_path="socket.io")


async def _refuse_polling(send: Any) -> None:
    body = {
        "success": False, "code": "TRANSPORT_NOT_SUPPORTED",
        "message": "Only the websocket transport is supported: connect with transports: ['websocket']",
        "error": "Only the websocket transport is supported: connect with transports: ['websocket']",
        "details": {"transports": ["websocket"]},
    }
    raw = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": 400,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]})
    await send({"type": "http.response.body", "body": raw})


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Engine.IO over websocket only; a plain HTTP (long-polling) request gets a clear 400."""
    if scope["type"] == "http":
        await _refuse_polling(send)
        return
    await _engine_app(scope, receive, send)
