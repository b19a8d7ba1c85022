"""Raw CDP access to a session (issue 16): tokens, the Redis transport, and the worker's relay.

A CDP client connects to the web tier (`/cdp/<token>`, sessions_app/realtime/cdp_gateway.py);
its session's browser runs on some worker of some host. The two meet in Redis, which every web
and browser host already shares (no new network path between hosts, no address to publish, any
web process serves any session, as for Socket.IO):

- `enigma:cdp:up:<session>` (a list): what the clients of the session send, each entry
  `<client id (16)><op (1)><data>`, op `o` (a client connected), `m` (a CDP message), `c` (it
  left). The session's runner pops it (`CdpRelay`).
- `enigma:cdp:down:<client id>` (a list): what the browser sends to that client: `m<data>`, or
  `c<code> <reason>` when the relay closes it.

Lists are popped, so nothing needs trimming; each push renews a short TTL, so a list nobody
reads still goes. Each client gets its own DevTools connection to the session's dedicated
Chromium (agents.cdp), so clients (and the agent's own Playwright) never see each other's
sessions. Everything a client sends passes `agents.cdp.judge` first.

Tokens are opaque (`cdp_...`), kept in Redis under a hash, scoped to one session, expiring
(ENIGMA_CDP_TOKEN_TTL_S, or less when minted so), revocable (all tokens of a session at once,
which also closes the clients that used them).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from django.conf import settings
from redis.exceptions import RedisError
from websockets.exceptions import ConnectionClosed

from agents.browser import NetworkPolicy, SessionBrowser
from agents.cdp import DedicatedBrowser, hide_event, judge
from enigma_site.redis import get_async_redis, get_redis

if TYPE_CHECKING:
    from .runner import SessionRunner

logger = logging.getLogger(__name__)

TOKEN_PREFIX = "cdp_"
CLIENT_ID_LENGTH = 16
LIST_TTL_S = 120
CLIENT_LEASE_S = 30.0
CLIENT_REFRESH_S = 10.0
BATCH = 500


def token_ttl_s() -> int:
    """ENIGMA_CDP_TOKEN_TTL_S: how long a minted token opens connections (default: the session
    lifetime cap, so the start-session token lasts as long as its session can)."""
    return int(settings.ENIGMA_CDP_TOKEN_TTL_S or settings.ENIGMA_SESSION_MAX_LIFETIME_S)


def warm_pool_size() -> int:
    """ENIGMA_CDP_WARM_POOL: dedicated CDP browsers each worker keeps started (default 1)."""
    return int(settings.ENIGMA_CDP_WARM_POOL)


def up_key(session_id: str) -> str:
    return f"enigma:cdp:up:{session_id}"


def down_key(client_id: str) -> str:
    return f"enigma:cdp:down:{client_id}"


def clients_key(session_id: str) -> str:
    return f"enigma:cdp:clients:{session_id}"


def revoked_group(session_id: str) -> str:
    return f"cdp.{session_id}"


def token_key(token_hash: str) -> str:
    return f"enigma:cdp-token:{token_hash}"


def _tokens_key(session_id: str) -> str:
    return f"enigma:cdp-tokens:{session_id}"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# ----- tokens (web) ---------------------------------------------------------------------------


def cdp_token_create(*, session_id: str, ttl_s: int | None = None) -> tuple[str, int]:
    """Mint a token that opens CDP connections to the session; returns (token, ttl seconds)."""
    ttl = max(1, min(int(ttl_s or token_ttl_s()), token_ttl_s()))
    token = TOKEN_PREFIX + secrets.token_urlsafe(24)
    digest = token_hash(token)
    pipe = get_redis().pipeline()
    pipe.set(token_key(digest), json.dumps({"s": session_id, "e": time.time() + ttl}), ex=ttl)
    pipe.sadd(_tokens_key(session_id), digest)
    pipe.expire(_tokens_key(session_id), token_ttl_s() + 60)
    pipe.execute()
    return token, ttl


def cdp_token_session(token: str) -> str | None:
    """The session id of a valid, unexpired token, else None."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 64:
        return None
    raw = get_redis().get(token_key(token_hash(token)))
    if raw is None:
        return None
    data = json.loads(raw)
    return str(data["s"]) if float(data["e"]) > time.time() else None


def cdp_tokens_revoke(session_id: str) -> int:
    """Revoke every token of the session; clients connected with one are closed. Returns how
    many tokens were live."""
    redis = get_redis()
    # decode_responses=True: members come back as str (the stubs say bytes | str).
    digests = cast("set[str]", redis.smembers(_tokens_key(session_id)))
    pipe = redis.pipeline()
    for digest in digests:
        pipe.delete(token_key(digest))
    pipe.delete(_tokens_key(session_id))
    results = pipe.execute()
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    async_to_sync(get_channel_layer().group_send)(revoked_group(session_id), {"type": "cdp.revoked"})
    return sum(1 for r in results[:-1] if r)


def connect_url(*, base_url: str, token: str) -> str:
    """`ws(s)://<origin>/cdp/<token>` for an http(s) base URL."""
    if base_url.startswith("https://"):
        return "wss://" + base_url.removeprefix("https://") + f"/cdp/{token}"
    return "ws://" + base_url.removeprefix("http://") + f"/cdp/{token}"


def cdp_client_count(session_id: str) -> int:
    """CDP clients connected now (leases held by web processes, see the gateway)."""
    redis = get_redis()
    pipe = redis.pipeline()
    pipe.zremrangebyscore(clients_key(session_id), "-inf", time.time())
    pipe.zcard(clients_key(session_id))
    return int(pipe.execute()[1])


def cdp_status(session: Any) -> dict[str, Any]:
    """The `cdp` object of GET /sessions/<id>."""
    enabled = bool(session.config.get("cdp"))
    return {"enabled": enabled, "clients": cdp_client_count(session.pk) if enabled and session.is_live else 0}


# ----- the transport (both sides) ---------------------------------------------------------------


class ListWriter:
    """Pushes entries to one Redis list in order, batching whatever piled up during a push."""

    def __init__(self, key: str) -> None:
        self.key = key
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._task = asyncio.ensure_future(self._run())

    def put(self, entry: str) -> None:
        self._queue.put_nowait(entry)

    async def _run(self) -> None:
        redis = get_async_redis()
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty() and len(batch) < BATCH:
                batch.append(self._queue.get_nowait())
            try:
                async with redis.pipeline(transaction=False) as pipe:
                    pipe.rpush(self.key, *batch)
                    pipe.expire(self.key, LIST_TTL_S)
                    await pipe.execute()
            except (OSError, RedisError) as exc:
                logger.warning("CDP transport push to %s failed: %s", self.key.rsplit(":", 1)[0], exc)

    async def flush(self, timeout: float = 2.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not self._queue.empty() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.005)

    async def close(self) -> None:
        await self.flush()
        self._task.cancel()  # not awaited: a push in flight may finish on its own


async def list_pop(key: str, timeout: float = 1.0) -> list[str]:
    """Up to BATCH entries of `key`, waiting up to `timeout` seconds for the first."""
    # [key, [entries]] or None; decode_responses=True makes every entry a str.
    result = cast(
        "tuple[str, list[str]] | None", await get_async_redis().blmpop(timeout, 1, key, direction="LEFT", count=BATCH)
    )
    return list(result[1]) if result else []


# ----- the worker's relay -------------------------------------------------------------------------


@dataclass
class _Client:
    client_id: str
    devtools: Any  # websockets ClientConnection to the dedicated Chromium
    down: ListWriter
    pump: asyncio.Task[None] | None = None
    hidden: set[str] = field(default_factory=set)  # target and session ids of WebUI pages


def _in_hidden_session(text: str, hidden: set[str]) -> bool:
    """An event from inside a hidden page's CDP session (its sessionId is hidden)."""
    tail = text[-120:]
    return any(f'"sessionId":"{sid}"' in tail for sid in hidden)


class CdpRelay:
    """One CDP session's clients in its runner: pops what they send, judges it, forwards it to
    the session's dedicated Chromium on each client's own DevTools connection, and pushes what
    the browser answers back. Client messages count as the session's activity."""

    def __init__(self, runner: SessionRunner, browser: DedicatedBrowser) -> None:
        self.runner = runner
        self.browser = browser
        self.session_id = runner.session_id
        self.clients: dict[str, _Client] = {}
        self._closing = False
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        key = up_key(self.session_id)
        while not self._closing:
            try:
                entries = await list_pop(key)
            except (OSError, RedisError) as exc:
                logger.warning("CDP relay of session %s: Redis: %s", self.session_id, exc)
                await asyncio.sleep(0.5)
                continue
            for entry in entries:
                client_id, op, data = (
                    entry[:CLIENT_ID_LENGTH],
                    entry[CLIENT_ID_LENGTH : CLIENT_ID_LENGTH + 1],
                    entry[CLIENT_ID_LENGTH + 1 :],
                )
                try:
                    await self._handle(client_id, op, data)
                except (OSError, ConnectionClosed, RuntimeError) as exc:
                    logger.info("CDP client of session %s failed: %s", self.session_id, exc)
                    await self._drop(client_id, 1011, "browser connection failed")

    async def _handle(self, client_id: str, op: str, data: str) -> None:
        if op == "o":
            if client_id not in self.clients:
                devtools = await self.browser.open_devtools()
                opened = _Client(client_id, devtools, ListWriter(down_key(client_id)))
                opened.pump = asyncio.ensure_future(self._pump(opened))
                self.clients[client_id] = opened
            return
        client = self.clients.get(client_id)
        if op == "c":
            if client is not None:
                await self._drop(client_id, None, "")
            return
        if client is None:
            # A message for a connection this relay never opened (an earlier host's): close it.
            writer = ListWriter(down_key(client_id))
            writer.put("c1012 the session moved to another browser host; reconnect")
            await writer.close()
            return
        self._touch()
        verdict = judge(data, human_control=self.runner.human_control, downloads_dir=str(self.browser.downloads_dir))
        if verdict.forward is not None:
            await client.devtools.send(verdict.forward)
        if verdict.reply is not None:
            client.down.put("m" + verdict.reply)
        if verdict.close:
            await client.down.flush()
            asyncio.ensure_future(self._browser_close())

    async def _browser_close(self) -> None:
        from .models import BrowserSession

        logger.info("CDP client closed the browser of session %s", self.session_id)
        await self.runner.end(BrowserSession.State.TERMINATED, "browser_closed")

    def _touch(self) -> None:
        self.runner.last_activity = time.monotonic()  # a client at work keeps the session alive

    async def _pump(self, client: _Client) -> None:
        try:
            async for message in client.devtools:
                text = message if isinstance(message, str) else message.decode()
                if '"sessionId"' in text[:200] and client.hidden and _in_hidden_session(text, client.hidden):
                    continue
                if not hide_event(text, client.hidden):
                    client.down.put("m" + text)
        except ConnectionClosed:
            pass
        if not self._closing and client.client_id in self.clients:
            await self._drop(client.client_id, 1011, "the browser closed the connection")

    async def _drop(self, client_id: str, code: int | None, reason: str) -> None:
        client = self.clients.pop(client_id, None)
        if client is None:
            return
        if client.pump is not None and client.pump is not asyncio.current_task():
            client.pump.cancel()
        with contextlib.suppress(OSError, ConnectionClosed):
            await client.devtools.close()
        if code is not None:
            client.down.put(f"c{code} {reason}")
        await client.down.close()

    async def close(self, reason: str = "the session ended") -> None:
        """Close every client (the session ended or moved)."""
        self._closing = True
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        for client_id in list(self.clients):
            await self._drop(client_id, 1000, reason)


def cdp_acquire(runner: SessionRunner) -> Callable[..., Awaitable[SessionBrowser]]:
    """The runner's `acquire` for a CDP session: a dedicated browser from the worker's CDP pool,
    and the relay that serves the session's clients from now on (also before it is active: a
    client that connected right after start-session waits in Redis meanwhile)."""

    async def acquire(
        *, policy: NetworkPolicy, storage_state: dict[str, Any] | None, proxy: dict[str, str] | None
    ) -> SessionBrowser:
        browser, dedicated = await runner.runtime.cdp.acquire(policy=policy, storage_state=storage_state, proxy=proxy)
        runner.cdp_relay = CdpRelay(runner, dedicated)
        return browser

    return acquire
