"""The CDP gateway: `ws(s)://<origin>/cdp/<token>`, a DevTools endpoint for unmodified clients
(Playwright `connect_over_cdp`, Puppeteer `connect({browserWSEndpoint})`).

The path holds an opaque CDP token (sessions_app.cdp), or the session id when the client sends
the team's API key in an `Authorization: Bearer` header. Frames go to the relay in the session's
runner, wherever it runs: straight to its worker's relay listener when the relay has published
its address (it does as soon as the session has its browser; the gateway waits up to
DIRECT_WAIT_S for it, the client's first frames held meanwhile), else through Redis (see
sessions_app/cdp.py). The connection
is refused (HTTP 403 to the handshake) for a bad or expired token, another team's session, an
ended session or one started without `"cdp": true`. Once open, it is closed with 1000 when the
session ends, 1012 when it moves to another host (reconnect with the same URL), 4401 when its
token is revoked. Each connection holds a lease in `enigma:cdp:clients:<session>` (how
GET /sessions/<id> counts clients).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from typing import Any, cast

from channels.generic.websocket import AsyncWebsocketConsumer
from redis.exceptions import RedisError
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from accounts.authentication import authenticate_raw_key
from enigma_site.errors import ApiError
from enigma_site.redis import get_async_redis

from ..cdp import (
    CLIENT_LEASE_S,
    CLIENT_REFRESH_S,
    REDIS_PATH,
    ListWriter,
    cdp_token_session,
    clients_key,
    down_key,
    list_pop,
    relay_at_key,
    relay_auth,
    revoked_group,
    token_hash,
    token_key,
    up_key,
)
from ..events import group_name
from ..models import BrowserSession
from .access import socket_db

logger = logging.getLogger(__name__)

CLOSE_REFUSED = 4403
CLOSE_REVOKED = 4401
DIRECT_WAIT_S = 3.0  # how long a new connection waits for its session's relay to publish its address
# How the relay's close codes reach the client; anything else (the worker went away) says
# "reconnect": the session is being taken over by another host.
_PASSED_ON = {1000, 1011, 1012, CLOSE_REVOKED}


class CdpRefused(ApiError):
    status_code = 403
    code = "CDP_REFUSED"
    default_message = "This CDP endpoint is invalid, expired, or its session does not allow CDP"


def cdp_authorize(path_token: str, authorization: str) -> tuple[BrowserSession, str]:
    """(session, token hash or "") for a connection to /cdp/<path_token>, or raise CdpRefused."""
    session_id = cdp_token_session(path_token)
    digest = token_hash(path_token) if session_id else ""
    query = BrowserSession.objects.filter(pk=(session_id or path_token)[:64])
    if session_id is None:
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise CdpRefused()
        try:
            query = query.filter(team_id=authenticate_raw_key(key.strip()).team.pk)
        except ApiError:
            raise CdpRefused() from None
    session = query.first()
    if session is None or not session.is_live or not session.config.get("cdp"):
        raise CdpRefused()
    return session, digest


class CdpGatewayConsumer(AsyncWebsocketConsumer):
    session_id = ""
    client_id = ""
    token_digest = ""
    up: ListWriter | None = None
    direct: ClientConnection | None = None
    _tasks: tuple[asyncio.Task[None], ...] = ()

    async def connect(self) -> None:
        headers = dict(self.scope.get("headers") or [])
        authorization = headers.get(b"authorization", b"").decode("latin-1")
        try:
            session, self.token_digest = await socket_db(cdp_authorize)(
                self.scope["url_route"]["kwargs"]["token"], authorization
            )
        except ApiError:
            await self.close(code=CLOSE_REFUSED)
            return
        self.session_id = session.pk
        self.client_id = secrets.token_hex(8)
        await self.channel_layer.group_add(group_name(self.session_id), self.channel_name)
        await self.channel_layer.group_add(revoked_group(self.session_id), self.channel_name)
        await self.accept()
        # The client's first frames wait in the consumer's queue while the path is chosen.
        lease = asyncio.ensure_future(self._lease())
        self.direct = await self._dial()
        if self.direct is not None:
            reader = asyncio.ensure_future(self._read_direct(self.direct))
        else:
            self.up = ListWriter(up_key(self.session_id))
            self.up.put(self.client_id + "o")
            reader = asyncio.ensure_future(self._read_down())
        await lease
        self._tasks = (reader, asyncio.ensure_future(self._refresh()))

    async def _dial(self) -> ClientConnection | None:
        """A connection to the relay listener of the session's worker, or None (use Redis)."""
        redis = get_async_redis()
        deadline = time.monotonic() + DIRECT_WAIT_S
        pause = 0.005  # doubling to 50 ms: a session still being placed is not polled 600 times
        try:
            while not (url := cast("str | None", await redis.get(relay_at_key(self.session_id)))):
                if time.monotonic() > deadline:
                    return None
                await asyncio.sleep(pause)
                pause = min(0.05, pause * 2)
            if url == REDIS_PATH:
                return None
            return await ws_connect(
                f"{url}/{self.session_id}",
                additional_headers={
                    "X-Enigma-Client": self.client_id,
                    "X-Enigma-Relay-Auth": relay_auth(self.session_id, self.client_id),
                },
                max_size=None,
                compression=None,
                open_timeout=3,
            )
        except (OSError, RedisError, InvalidHandshake, TimeoutError) as exc:
            logger.warning("CDP gateway: no direct path to the relay of a session (%s); using Redis", exc)
            return None

    async def _read_direct(self, direct: ClientConnection) -> None:
        try:
            async for message in direct:
                await self.send(text_data=message if isinstance(message, str) else message.decode("utf-8", "replace"))
        except ConnectionClosed:
            pass
        code = direct.close_code if direct.close_code in _PASSED_ON else 1012
        await self.close(code=code)

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels runs close_old_connections in a thread before every handler; a client's
        # frames touch no database, and that hop cost more than the rest of their way through
        # this process (about 0.5 ms of each round trip).
        if message["type"] == "websocket.receive":
            await self.websocket_receive(message)
        else:
            await super().dispatch(message)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        data = text_data if text_data is not None else (bytes_data or b"").decode("utf-8", "replace")
        if self.direct is not None:
            with contextlib.suppress(ConnectionClosed):  # _read_direct closes the client
                await self.direct.send(data)
        elif self.up is not None:
            self.up.put(self.client_id + "m" + data)

    async def disconnect(self, code: int) -> None:
        for task in self._tasks:
            task.cancel()
        if not self.session_id:
            return
        with contextlib.suppress(RedisError, OSError):
            redis = get_async_redis()
            await redis.zrem(clients_key(self.session_id), self.client_id)
            await redis.delete(down_key(self.client_id))
        if self.direct is not None:
            with contextlib.suppress(OSError, ConnectionClosed):
                await self.direct.close()
        if self.up is not None:
            self.up.put(self.client_id + "c")
            await self.up.close()
            self.up = None
        await self.channel_layer.group_discard(group_name(self.session_id), self.channel_name)
        await self.channel_layer.group_discard(revoked_group(self.session_id), self.channel_name)

    async def _lease(self) -> None:
        redis = get_async_redis()
        async with redis.pipeline(transaction=True) as pipe:
            pipe.zadd(clients_key(self.session_id), {self.client_id: time.time() + CLIENT_LEASE_S})
            pipe.expire(clients_key(self.session_id), int(CLIENT_LEASE_S) + 5)
            await pipe.execute()

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(CLIENT_REFRESH_S)
            try:
                await self._lease()
            except (RedisError, OSError):
                logger.warning("could not refresh a CDP client lease of a session")

    async def _read_down(self) -> None:
        key = down_key(self.client_id)
        while True:
            try:
                entries = await list_pop(key)
            except (RedisError, OSError):
                await asyncio.sleep(0.5)
                continue
            for entry in entries:
                if entry[:1] == "m":
                    await self.send(text_data=entry[1:])
                    continue
                code, _, _reason = entry[1:].partition(" ")
                await self.close(code=int(code) if code.isdigit() else 1011)
                return

    async def session_event(self, message: dict[str, Any]) -> None:
        name = message["name"]
        if name == "end_session":
            await self.close(code=1000)
        elif name == "instance:disconnected":
            await self.close(code=1012)

    async def cdp_revoked(self, message: dict[str, Any]) -> None:
        if not self.token_digest:
            return  # opened with the API key, not a token
        alive = await get_async_redis().exists(token_key(self.token_digest))
        if not alive:
            await self.close(code=CLOSE_REVOKED)
