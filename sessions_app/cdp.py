"""Raw CDP access to a session (issue 16): tokens, the two transports, and the worker's relay.

A CDP client connects to the web tier (`/cdp/<token>`, sessions_app/realtime/cdp_gateway.py);
its session's browser runs on some worker of some host. The gateway reaches the session's relay
in one of two ways:

- Direct (the default): each worker listens for its gateways on a websocket
  (ENIGMA_CDP_RELAY_HOST / _PORT; `RelayServer`), and a session's relay publishes that address
  under `enigma:cdp:at:<session>` while it runs. The gateway dials it with the session id in the
  path and `X-Enigma-Client` / `X-Enigma-Relay-Auth` headers (an HMAC of both under the
  SECRET_KEY every host shares), and frames then go straight between the two processes: one
  websocket frame each way instead of a Redis push and pop per batch (a CDP round trip went from
  ~4 ms to ~1 ms, and the Redis client's CPU per frame off both processes).
- Through Redis, when the relay's worker has no listener (ENIGMA_CDP_RELAY_HOST="": it publishes
  REDIS_PATH instead of an address), when no address is published within a few seconds (the
  session is not placed yet) or when it cannot be dialled: every web and browser host already
  shares Redis, so this needs no network path between hosts:

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
import hmac
import json
import logging
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from django.conf import settings
from redis.exceptions import RedisError
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

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


REDIS_PATH = "redis"  # what a relay publishes as its address when its worker has no listener


def relay_at_key(session_id: str) -> str:
    return f"enigma:cdp:at:{session_id}"


def relay_auth(session_id: str, client_id: str) -> str:
    """What the gateway shows a worker's relay listener to open `client_id` of the session."""
    message = f"cdp-relay:{session_id}:{client_id}".encode("utf-8", "replace")
    return hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).hexdigest()


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


class _Writer:
    """Entries sent in order by one task (`_run`); `put` never blocks the caller."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._task = asyncio.ensure_future(self._run())

    def put(self, entry: str) -> None:
        self._queue.put_nowait(entry)

    async def _run(self) -> None:
        raise NotImplementedError

    async def flush(self, timeout: float = 2.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not self._queue.empty() and not self._task.done() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.005)

    async def close(self) -> None:
        await self.flush()
        self._task.cancel()  # not awaited: a send in flight may finish on its own


class ListWriter(_Writer):
    """Pushes entries to one Redis list in order, batching whatever piled up during a push."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__()

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


async def list_pop(key: str, timeout: float = 1.0) -> list[str]:
    """Up to BATCH entries of `key`, waiting up to `timeout` seconds for the first."""
    # [key, [entries]] or None; decode_responses=True makes every entry a str.
    result = cast(
        "tuple[str, list[str]] | None", await get_async_redis().blmpop(timeout, 1, key, direction="LEFT", count=BATCH)
    )
    return list(result[1]) if result else []


class DirectWriter(_Writer):
    """ListWriter's counterpart on the direct path: entries (`m<data>`, `c<code> <reason>`) go, in
    order, to the gateway's websocket as frames, or close it."""

    def __init__(self, websocket: ServerConnection) -> None:
        self.websocket = websocket
        super().__init__()

    async def _run(self) -> None:
        while True:
            entry = await self._queue.get()
            try:
                if entry[:1] == "m":
                    await self.websocket.send(entry[1:])
                    continue
                code, _, reason = entry[1:].partition(" ")
                await self.websocket.close(int(code) if code.isdigit() else 1011, reason[:100])
            except ConnectionClosed:
                pass
            return


# ----- the worker's relay -------------------------------------------------------------------------


@dataclass
class _Client:
    client_id: str
    devtools: Any  # websockets ClientConnection to the dedicated Chromium
    down: _Writer
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
        # Published even when the direct path is off (REDIS_PATH), so a gateway need not wait.
        self._address = runner.runtime.cdp_relay_server.url or REDIS_PATH
        self._published = asyncio.ensure_future(self._publish())

    async def _publish(self) -> None:
        """Tell the gateways where to dial this relay (until it closes)."""
        try:
            await get_async_redis().set(relay_at_key(self.session_id), self._address, ex=token_ttl_s() + 60)
        except (OSError, RedisError) as exc:  # the gateways fall back to the Redis path
            logger.warning("could not publish the CDP relay of session %s: %s", self.session_id, exc)

    async def serve_direct(self, client_id: str, websocket: ServerConnection) -> None:
        """Serve one client whose gateway dialled this worker (RelayServer) until either side closes."""
        await self._handle(client_id, "o", "", down=DirectWriter(websocket))
        try:
            async for message in websocket:
                if client_id not in self.clients:
                    break
                text = message if isinstance(message, str) else message.decode("utf-8", "replace")
                if not await self._handle_or_drop(client_id, "m", text):
                    return
        except ConnectionClosed:
            pass
        await self._drop(client_id, None, "")

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
                await self._handle_or_drop(client_id, op, data)

    async def _handle_or_drop(self, client_id: str, op: str, data: str) -> bool:
        """_handle; a client whose browser connection failed is dropped (False)."""
        try:
            await self._handle(client_id, op, data)
        except (OSError, ConnectionClosed, RuntimeError) as exc:
            logger.info("CDP client of session %s failed: %s", self.session_id, exc)
            await self._drop(client_id, 1011, "browser connection failed")
            return False
        return True

    async def _handle(self, client_id: str, op: str, data: str, down: DirectWriter | None = None) -> None:
        if op == "o":
            if client_id not in self.clients:
                devtools = await self.browser.open_devtools()
                opened = _Client(client_id, devtools, down or ListWriter(down_key(client_id)))
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
        await self._published
        with contextlib.suppress(OSError, RedisError):  # only our own address: a later host's stays
            await get_async_redis().eval(_DELETE_IF_OURS, 1, relay_at_key(self.session_id), self._address)
        for client_id in list(self.clients):
            await self._drop(client_id, 1000, reason)


_DELETE_IF_OURS = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


class RelayServer:
    """A worker's listener for the gateways' direct connections (see the module docstring).
    `relays(session_id)` is the relay of a session this worker hosts, or None."""

    def __init__(self, relays: Callable[[str], CdpRelay | None]) -> None:
        self.relays = relays
        self.url = ""
        self.listening: tuple[str, ...] = ()  # host:port of each of its sockets, and as advertised
        self._server: Server | None = None

    async def start(self) -> str:
        """Listen (ENIGMA_CDP_RELAY_HOST / _PORT) and return the address gateways dial, or ""
        when the direct path is off."""
        host = settings.ENIGMA_CDP_RELAY_HOST
        if not host:
            return ""
        self._server = await serve(
            self._serve,
            host,
            settings.ENIGMA_CDP_RELAY_PORT,
            process_request=self._authorize,
            max_size=None,
            compression=None,
        )
        port = next(iter(self._server.sockets)).getsockname()[1]
        advertised = settings.ENIGMA_CDP_RELAY_ADVERTISE or (host if host not in ("0.0.0.0", "::") else "")
        if not advertised:
            advertised = socket.getfqdn()
        shown = f"[{advertised}]" if ":" in advertised else advertised
        self.url = f"ws://{shown}:{port}"
        bound = [sock.getsockname()[:2] for sock in self._server.sockets]
        self.listening = (*(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in bound), f"{shown}:{port}")
        return self.url

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    @staticmethod
    def _ids(request: Request) -> tuple[str, str]:
        return request.path.strip("/")[:64], request.headers.get("X-Enigma-Client", "")

    def _authorize(self, connection: ServerConnection, request: Request) -> Response | None:
        session_id, client_id = self._ids(request)
        given = request.headers.get("X-Enigma-Relay-Auth", "")
        # As bytes: compare_digest raises on a str with non-ASCII characters.
        expected = relay_auth(session_id, client_id).encode("utf-8", "replace")
        if (
            len(client_id) != CLIENT_ID_LENGTH
            or not (session_id + client_id).isascii()
            or not hmac.compare_digest(given.encode("utf-8", "replace"), expected)
        ):
            return connection.respond(403, "refused\n")
        return None

    async def _serve(self, websocket: ServerConnection) -> None:
        session_id, client_id = self._ids(websocket.request)  # type: ignore[arg-type]
        relay = self.relays(session_id)
        if relay is None or relay._closing:
            await websocket.close(1012, "the session is not on this host; reconnect")
            return
        await relay.serve_direct(client_id, websocket)


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
