"""The Socket.IO v4 server (api.md §3), mounted at /socket.io/ by enigma_site.asgi.

python-socketio speaks the protocol; this module binds it to our sessions. Each connected
socket gets its own channel-layer channel in the session's event group (so events from any
worker reach it on any web process), replays the log after `auth.lastEventId` before live
events, and, when it asks for frames (`auth.frames` or `emit("watch")`), a feed of the session's
frames (sessions_app.frames) plus a viewer lease that keeps the screencast running.

A socket lives as long as its session: only `end_session` closes it from our side. A Redis or
database error while it waits is retried; once the layer answers again the socket re-joins its
group and replays the log after the last event it sent, so nothing is lost meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, cast

import redis.exceptions
import socketio
from channels.layers import get_channel_layer
from django.db import DatabaseError

from enigma_site.errors import ApiError
from enigma_site.parsers import json_loads
from enigma_site.redis import get_async_redis, get_redis

from ..events import events_after, group_name
from ..frames import FrameFeed, frames_watch
from .access import (
    SocketGrant,
    error_payload,
    socket_db,
    socket_message_apply,
    socket_session_authorize,
    without_session_id,
)
from .viewers import ViewerLease

logger = logging.getLogger(__name__)

REPLAY_PAGE = 500
STALE_FRAME_S = 0.5
RETRY_BASE_S = 0.5
RETRY_MAX_S = 5.0
# Errors a socket waits out: Redis (the channel layer, leases) or the database (the log).
TRANSIENT = (redis.exceptions.RedisError, OSError, DatabaseError)
# Events after which a watching client asks the (possibly new) runner to start frames again.
RUNNER_STARTED = {"session_active", "instance:reconnected"}

_clients: dict[str, SocketClient] = {}


def active_sockets_key(team_id: int) -> str:
    return f"enigma:sockets:{team_id}"


def active_sockets(*, team_id: int) -> list[str]:
    """The ids of the team's Socket.IO connections open now, on every web process."""
    # decode_responses=True: members come back as str (the stubs say bytes | str).
    return sorted(cast("set[str]", get_redis().smembers(active_sockets_key(team_id))))


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
    # No cookies are involved: what is in `auth` is the credential.
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


def _backoff(failures: int) -> float:
    return min(RETRY_MAX_S, RETRY_BASE_S * 2 ** min(failures, 8))


class SocketClient:
    """One connected socket: its grant, its channels, its pumps and its viewer lease."""

    def __init__(self, sid: str, grant: SocketGrant, last_event_id: int | None) -> None:
        self.sid = sid
        self.grant = grant
        self.session_id = grant.session_id
        # Replay from what the client says it has, else from the log's end when it was let in.
        self.cursor = grant.last_event_id if last_event_id is None else last_event_id
        self.sent: set[int] = set()
        self.ready = asyncio.Event()
        self.layer = get_channel_layer()
        self.events_channel = ""
        self.frames: FrameFeed | None = None
        self.lease = ViewerLease(self.session_id)
        self.events_task: asyncio.Task[None] | None = None
        self.frames_task: asyncio.Task[None] | None = None
        self.closed = False
        self.ended = False  # end_session went out: the socket is being closed

    async def open(self) -> None:
        # Join before reading the log: an event stored meanwhile arrives on both paths and is
        # dropped once by id, never lost between them.
        self.events_channel = await self.layer.new_channel("sio.")
        await self.layer.group_add(group_name(self.session_id), self.events_channel)
        self.events_task = asyncio.create_task(self._pump_events())

    async def watch(self, on: bool) -> None:
        if on and self.frames is None:
            self.frames = await frames_watch(self.session_id)
            self.frames_task = asyncio.create_task(self._pump_frames(self.frames))
            await self.lease.start()
        elif not on and self.frames is not None:
            await self._unwatch()

    async def _unwatch(self) -> None:
        frames, self.frames = self.frames, None
        task, self.frames_task = self.frames_task, None
        if task is not None:
            task.cancel()
        if frames is not None:
            frames.close()
        await self.lease.stop()

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.events_task is not None and self.events_task is not asyncio.current_task():
            self.events_task.cancel()
        try:
            await self.layer.group_discard(group_name(self.session_id), self.events_channel)
            await self._unwatch()
        except TRANSIENT:  # the group membership and the lease expire on their own
            logger.warning("could not leave the groups of socket %s", self.sid)

    def shown(self, payload: dict[str, Any]) -> dict[str, Any]:
        """A payload as this socket may see it (viewers never see the session id)."""
        return without_session_id(payload, self.session_id) if self.grant.hides_session_id else payload

    async def _emit(self, name: str, payload: dict[str, Any], event_id: int) -> None:
        if event_id in self.sent:
            return
        self.sent.add(event_id)
        self.cursor = max(self.cursor, event_id)
        await sio.emit(name, self.shown({**payload, "eventId": event_id}), to=self.sid)
        if name == "end_session":
            # The session is over: close the socket the way api.md §2.2 (terminate) says.
            # A short pause lets the end_session packet leave first.
            self.ended = True
            await asyncio.sleep(0.05)
            await sio.disconnect(self.sid)
        elif payload.get("type") in RUNNER_STARTED or name in RUNNER_STARTED:
            await self.lease.nudge()

    async def _replay(self) -> None:
        """Send the log after the cursor (events missed while not listening)."""
        while not (self.closed or self.ended):
            rows = await socket_db(events_after)(session_id=self.session_id, after=self.cursor, limit=REPLAY_PAGE)
            for row in rows:
                await self._emit(row["name"], row["data"], row["id"])
                if self.closed or self.ended:
                    return
            if len(rows) < REPLAY_PAGE:
                return

    async def _pump_events(self) -> None:
        try:
            await asyncio.wait_for(self.ready.wait(), timeout=30)
            failures = 0
            catch_up = True
            while not (self.closed or self.ended):
                try:
                    if catch_up:
                        if failures:  # Redis may have lost the group (a restart): join again
                            await self.layer.group_add(group_name(self.session_id), self.events_channel)
                        await self._replay()
                        catch_up = False
                        continue
                    message = await self.layer.receive(self.events_channel)
                except TRANSIENT as exc:
                    failures += 1
                    catch_up = True
                    logger.warning("event pump of socket %s: %s: %s; retrying", self.sid, type(exc).__name__, exc)
                    await asyncio.sleep(_backoff(failures))
                    continue
                failures = 0
                await self._emit(message["name"], message["payload"], message["id"])
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug, not an outage: the client reconnects with lastEventId
            logger.exception("event pump of socket %s failed", self.sid)
            await sio.disconnect(self.sid)

    async def _pump_frames(self, frames: FrameFeed) -> None:
        await self.ready.wait()
        while True:
            frame = await frames.next()
            # Only the newest frame waits here; one that is still too old (the client's
            # connection is slow) is skipped so the client gets the next picture instead.
            if time.time() - float(frame.get("sentAt") or 0) > STALE_FRAME_S:
                continue
            await sio.emit("frame", self.shown(frame), to=self.sid)


@sio.event
async def connect(sid: str, environ: dict[str, Any], auth: Any) -> None:
    try:
        grant = await socket_db(socket_session_authorize)(auth)
    except ApiError as exc:
        raise socketio.exceptions.ConnectionRefusedError(
            exc.message, {"code": exc.code, "details": exc.details}
        ) from None
    client = SocketClient(sid, grant, _last_event_id(auth))
    _clients[sid] = client
    try:
        await get_async_redis().sadd(active_sockets_key(grant.session.team_id), sid)
        await client.open()
        if auth.get("frames"):
            await client.watch(True)
    except TRANSIENT:
        _clients.pop(sid, None)
        await client.close()
        raise socketio.exceptions.ConnectionRefusedError(
            "Service temporarily unavailable, try again", {"code": "SERVICE_UNAVAILABLE", "details": {}}
        ) from None


@sio.event
async def disconnect(sid: str, reason: Any = None) -> None:
    client = _clients.pop(sid, None)
    if client is None:
        return
    await client.close()
    try:
        await get_async_redis().srem(active_sockets_key(client.grant.session.team_id), sid)
    except TRANSIENT:
        logger.warning("could not unlist socket %s", sid)


@sio.on("message")
async def on_message(sid: str, data: Any = None) -> dict[str, Any]:
    """A client's emit("message", m): the same message and validation as send-message, within
    what the socket's credential allows. The acknowledgement (if asked for) is the REST body;
    errors also arrive as an `error` message."""
    client = _clients.get(sid)
    if client is None:
        return {"success": False, "code": "SESSION_NOT_FOUND", "error": "Not connected to a session"}
    try:
        if isinstance(data, str):  # a message sent as JSON text gets the REST body's checks
            data = json_loads(data.encode("utf-8", "surrogatepass"))
        return await socket_db(socket_message_apply)(grant=client.grant, raw=data)
    except ApiError as exc:
        body = client.shown(error_payload(exc))
    except Exception:
        logger.exception("socket message of socket %s failed", sid)
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
        "success": False,
        "code": "TRANSPORT_NOT_SUPPORTED",
        "message": "Only the websocket transport is supported: connect with transports: ['websocket']",
        "error": "Only the websocket transport is supported: connect with transports: ['websocket']",
        "details": {"transports": ["websocket"]},
    }
    raw = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 400,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": raw})


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Engine.IO over websocket only; a plain HTTP (long-polling) request gets a clear 400."""
    if scope["type"] == "http":
        await _refuse_polling(send)
        return
    await _engine_app(scope, receive, send)
