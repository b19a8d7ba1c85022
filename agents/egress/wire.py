"""The gate's connections as asyncio protocols, without StreamReader or a task per direction.

What a client sends goes from `data_received` straight into llhttp; the gate's coroutine for the
connection wakes only where it must decide (a new request: judge, resolve, connect). A response
is relayed by the upstream connection's own `data_received`: parsed, re-framed and written to
the client in the same callback, and the coroutine wakes once, when the response has ended. A
tunnel is two callbacks writing to each other. Back-pressure is the transports' own: a side that
cannot write holds the other side's reading (`pause_reading`) until its buffer drains.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Protocol

from .http1 import (
    END,
    HOP_HEADERS,
    LAST_CHUNK,
    READ_SIZE,
    Head,
    ProtocolError,
    RequestParser,
    ResponseParser,
    chunk,
    head_bytes,
    response_bytes,
)

STALE = object()  # a reused upstream connection closed before any byte of its answer
RETRY = Head(method=b"RETRY")  # from ClientConn.next(): send the last request once more
Outcome = tuple[bool, bool] | object  # (client connection can go on, upstream reusable) or STALE


class Activity:
    """When a tunnel or a body last moved a byte."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last = time.monotonic()


class _Conn(asyncio.Protocol):
    """What both sides share: reading held for named reasons, writes that tell the peer when
    this side's buffer is full, one waiter for the coroutine."""

    transport: asyncio.Transport

    def __init__(self) -> None:
        self.peer: _Conn | None = None  # whose reading is held while this side cannot write
        self.closed = False  # the connection is lost
        self.eof = False  # the other end sent no more (or the connection is lost)
        self._holds: set[str] = set()
        self._write_paused = False
        self._drained: asyncio.Future[None] | None = None
        self._waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    # ----- reading ---------------------------------------------------------------------------

    def hold(self, reason: str) -> None:
        if not self._holds and not self.closed:
            self.transport.pause_reading()
        self._holds.add(reason)

    def release(self, reason: str) -> None:
        if reason in self._holds:
            self._holds.discard(reason)
            if not self._holds and not self.closed:
                self.transport.resume_reading()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    # ----- writing ---------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if not self.closed:
            self.transport.write(data)

    def pause_writing(self) -> None:
        self._write_paused = True
        if self.peer is not None:
            self.peer.hold("peer")

    def resume_writing(self) -> None:
        self._write_paused = False
        if self.peer is not None:
            self.peer.release("peer")
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    async def drain(self) -> None:
        """Wait until the write buffer is below its high-water mark; ConnectionResetError once
        the connection is lost."""
        if self._write_paused and not self.closed:
            self._drained = asyncio.get_running_loop().create_future()
            await self._drained
        if self.closed:
            raise ConnectionResetError("connection lost")

    def set_peer(self, peer: _Conn | None) -> None:
        if self.peer is not None and self.peer is not peer:
            self.peer.release("peer")
        self.peer = peer
        if peer is not None and self._write_paused:
            peer.hold("peer")

    # ----- ending ----------------------------------------------------------------------------

    def close(self) -> None:
        if not self.closed:
            self.transport.close()

    def abort(self) -> None:
        """Close without flushing: a peer that stopped reading must not keep the connection
        (and whoever waits in drain()) alive."""
        if not self.closed:
            self.transport.abort()

    def write_eof(self) -> None:
        if not self.closed and not self.transport.is_closing() and self.transport.can_write_eof():
            try:
                self.transport.write_eof()
            except OSError:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = self.eof = True
        self._wake()
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)  # drain() then raises


class Meter(Protocol):
    """Where a connection's bytes are counted (the session's egress slot)."""

    bytes_sent: int
    bytes_received: int


class Tunnel:
    """Both ends of a spliced connection: bytes are written on in the callback that read them;
    `ended` resolves when one side has ended, `both_ended` when both have."""

    def __init__(self, meter: Meter) -> None:
        loop = asyncio.get_running_loop()
        self.activity = Activity()
        self.meter = meter
        self.ended: asyncio.Future[None] = loop.create_future()
        self.both_ended: asyncio.Future[None] = loop.create_future()
        self._sides: set[str] = set()

    def hand_over(self, side: str, leftover: bytes, to: _Conn, *, ended: bool) -> None:
        """What `side` sent before the tunnel was up goes first; if it has ended already, so
        does the other side's writing."""
        if leftover:
            if side == "client":
                self.meter.bytes_sent += len(leftover)
            else:
                self.meter.bytes_received += len(leftover)
            to.write(leftover)
        if ended:
            to.write_eof()
            self.side_ended(side)

    def side_ended(self, side: str) -> None:
        self._sides.add(side)
        for future in (self.ended, self.both_ended) if len(self._sides) >= 2 else (self.ended,):
            if not future.done():
                future.set_result(None)


class ClientConn(_Conn):
    """A connection from the browser. `next()` gives the parsed requests' events; a `CONNECT`
    turns it into one end of a tunnel."""

    QUEUE_LIMIT = READ_SIZE  # bytes queued for the gate before reading is held

    def __init__(self, on_connect: Callable[[ClientConn], Any] | None = None) -> None:
        super().__init__()
        self.parser = RequestParser()
        self.gone = False  # the client closed or half-closed: what it asked for is moot
        self.relay: UpstreamConn | None = None  # relaying a response to this client now
        self.retry = False  # the relay's kept-alive connection was stale: the request goes again
        self.last_request: Head | None = None
        self.closing = False  # the last request said Connection: close
        # The gate's fast path: sends a request that needs no waiting, right from data_received.
        self.on_request: Callable[[ClientConn], bool] | None = None
        self.error: ProtocolError | None = None
        self._relay_done: asyncio.Future[None] | None = None
        self._queued = 0
        self._tunnel: Tunnel | None = None
        self._tunnel_to: UpstreamConn | None = None
        self._on_connect = on_connect

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self._on_connect is not None:
            self._on_connect(self)

    def data_received(self, data: bytes) -> None:
        upstream = self._tunnel_to
        if upstream is not None:
            assert self._tunnel is not None
            self._tunnel.activity.last = time.monotonic()
            self._tunnel.meter.bytes_sent += len(data)
            upstream.write(data)
            return
        self._queued += len(data)
        parser = self.parser
        if parser.upgraded:  # after a CONNECT head, before the tunnel is up
            parser.leftover += data
        elif self.error is None:
            try:
                parser.feed(data)
            except ProtocolError as exc:
                # Whole requests before the bad bytes still go; the one they broke does not.
                self.error = exc
                events = parser.events
                while events and events[-1] is not END:
                    events.pop()
            else:
                # The coroutine is idle in next() (nothing in flight): the request may go now.
                # (A bug in it ends this connection through asyncio's own logged boundary.)
                if self._waiter is not None and self.relay is None and self.on_request is not None and parser.events:
                    self.on_request(self)
        if self._queued > self.QUEUE_LIMIT:
            self.hold("queue")
        if parser.events or self.error is not None or parser.upgraded:
            self._wake()

    @property
    def writable(self) -> bool:
        """Open, and not above the write buffer's high-water mark."""
        return not self._write_paused and not self.closed

    def _went(self) -> None:
        self.gone = True
        self._wake()
        relay = self.relay
        if relay is not None:
            relay.finish(None)  # the client went away: so does the request

    def eof_received(self) -> bool:
        self.eof = True
        if self._tunnel_to is not None:
            assert self._tunnel is not None
            self._tunnel_to.write_eof()
            self._tunnel.side_ended("client")
            return True
        self._went()
        return True  # what is being written still goes out; the gate closes it

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self._tunnel is not None:
            self._tunnel.side_ended("client")
            if self._tunnel_to is not None:
                self._tunnel_to.write_eof()
        self._went()

    def relay_ended(self) -> None:
        done, self._relay_done = self._relay_done, None
        if done is not None and not done.done():
            done.set_result(None)
        if self.retry:
            self._wake()

    async def idle(self) -> None:
        """Wait until no response is being relayed to this client."""
        while self.relay is not None and not self.closed:
            self._relay_done = asyncio.get_running_loop().create_future()
            await self._relay_done

    def ready(self) -> Head | bytes | None:
        """An event that is already here, without waiting."""
        parser = self.parser
        if not parser.events:
            if self.error is not None:
                raise self.error
            return None
        event = parser.pop()
        if not parser.events:
            self._queued = 0
            if self._holds:
                self.release("queue")
        return event

    async def next(self) -> Head | bytes | None:
        """The next event: a Head, a body piece, END; RETRY when the last request must go once
        more; None when the client is gone (or, after a CONNECT head, when the parser stopped)."""
        while True:
            if self.retry:
                self.retry = False
                return RETRY
            event = self.ready()
            if event is not None:
                return event
            if self.gone or self.parser.upgraded:
                return None
            await self._wait()

    def splice(self, upstream: UpstreamConn, tunnel: Tunnel) -> None:
        """From now on what the client sends goes to `upstream` as it comes."""
        leftover, self.parser.leftover = self.parser.leftover, b""
        self._tunnel, self._tunnel_to = tunnel, upstream
        self.set_peer(upstream)
        self._queued = 0
        self.release("queue")
        tunnel.hand_over("client", leftover, upstream, ended=self.eof)


class Pool:
    """A session's idle kept-alive upstream connections (plain HTTP), by where they go."""

    def __init__(self, limit: int, max_idle_s: float) -> None:
        self.limit = limit
        self.max_idle_s = max_idle_s
        self._idle: dict[tuple[str, str, int], list[UpstreamConn]] = {}
        self._count = 0

    def put(self, conn: UpstreamConn) -> bool:
        if conn.key is None or self._count >= self.limit:
            return False
        self._idle.setdefault(conn.key, []).append(conn)
        self._count += 1
        return True

    def take(self, key: tuple[str, str, int]) -> UpstreamConn | None:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            self._count -= 1
            if now - conn.since < self.max_idle_s and conn.mode == "idle" and not conn.eof:
                return conn
            conn.close()
        return None

    def clear(self) -> None:
        self._idle.clear()
        self._count = 0


class Watch:
    """The relays in flight and their deadlines, checked by one periodic sweep of the gate
    (no timer per request)."""

    def __init__(self) -> None:
        self.relays: set[UpstreamConn] = set()

    def sweep(self) -> None:
        now = time.monotonic()
        for conn in [c for c in self.relays if c.deadline_at <= now]:
            conn.time_out()


class UpstreamConn(_Conn):
    """A connection to a server or an upstream proxy: raw reads while a proxy handshake runs,
    then either a relayed response per request (plain HTTP, kept alive between them) or one end
    of a tunnel.

    A relayed response ends in this connection's callbacks: the connection goes back to its
    pool or is closed, and the client connection is closed when it cannot go on (an HTTP/1.0
    body until close, a failure, `Connection: close`). The gate's coroutine for the client is
    woken only when a reused connection turned out closed before any byte (`ClientConn.retry`)."""

    def __init__(self) -> None:
        super().__init__()
        self.mode = "raw"  # "raw" | "response" | "idle" | "tunnel" | "done"
        self.parser = ResponseParser()
        self.key: tuple[str, str, int] | None = None  # the pool it may go back to (plain HTTP)
        self.destination = ""  # the host or checked address the request names
        self.absolute = False  # an http upstream: absolute-form requests
        self.reused = False
        self.since = 0.0  # idle in the pool since
        self.head_sent = False  # the relayed response's head went to the client
        self.meter: Meter | None = None  # counts the bytes read from the wire
        self.registry: set[UpstreamConn] | None = None  # the session's open upstream connections
        self.pool: Pool | None = None
        self.watch: Watch | None = None
        self.deadline_at = 0.0
        self.idle_s = 0.0
        self.retryable = False  # the request may go once more if this connection was stale
        self._raw = bytearray()
        self._client: ClientConn | None = None
        self._tunnel: Tunnel | None = None
        self._request: Head | None = None
        self._framing = ""
        self._close_client = False

    # ----- raw reads (an upstream proxy's handshake) -----------------------------------------

    async def read_exactly(self, n: int) -> bytes:
        while len(self._raw) < n:
            if self.eof:
                raise asyncio.IncompleteReadError(bytes(self._raw), n)
            await self._wait()
        data = bytes(self._raw[:n])
        del self._raw[:n]
        return data

    async def read_until(self, separator: bytes, limit: int = READ_SIZE) -> bytes:
        while (end := self._raw.find(separator)) < 0:
            if self.eof or len(self._raw) > limit:
                raise asyncio.IncompleteReadError(bytes(self._raw), None)
            await self._wait()
        data = bytes(self._raw[: end + len(separator)])
        del self._raw[: end + len(separator)]
        return data

    # ----- the wire --------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        mode = self.mode
        if mode == "response":
            self._response_bytes(data)
        elif mode == "tunnel":
            assert self._tunnel is not None and self._client is not None
            self._tunnel.activity.last = time.monotonic()
            self._tunnel.meter.bytes_received += len(data)
            self._client.write(data)
        elif mode == "raw":
            self._raw += data
            if len(self._raw) > READ_SIZE:
                self.hold("raw")
            self._wake()
        else:  # idle in the pool, or done: a server that talks out of turn is not reused
            self.mode = "done"
            self.close()

    def eof_received(self) -> bool:
        self.eof = True
        if self.mode == "tunnel":
            assert self._tunnel is not None and self._client is not None
            self._client.write_eof()
            self._tunnel.side_ended("upstream")
            return True
        self._ended()
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.registry is not None:
            self.registry.discard(self)
        if self.mode == "tunnel":
            assert self._tunnel is not None and self._client is not None
            self._client.write_eof()
            self._tunnel.side_ended("upstream")
        self._ended()

    def close(self) -> None:
        if self.registry is not None:
            self.registry.discard(self)
        super().close()

    def abort(self) -> None:
        if self.registry is not None:
            self.registry.discard(self)
        super().abort()

    # ----- relaying a response ---------------------------------------------------------------

    def relay(self, client: ClientConn, request: Head, *, idle_s: float) -> None:
        """Relay the response to `request` to `client` from now on (until then, the request is
        sent: `idle_s` bounds each wait)."""
        self.mode = "response"
        self.head_sent = False
        self.idle_s = idle_s
        self._client, self._request = client, request
        client.relay = self
        client.set_peer(self)
        self.touch()
        if self.watch is not None:
            self.watch.relays.add(self)
        if client.gone:
            self.finish(None)

    def touch(self, delay: float | None = None) -> None:
        """Bytes moved: the deadline is `delay` (the idle timeout) from now."""
        self.deadline_at = time.monotonic() + (self.idle_s if delay is None else delay)

    def time_out(self) -> None:
        client = self._client
        if self.mode == "response" and client is not None and not self.head_sent:
            client.write(response_bytes(504, "Gateway Timeout", b""))
        self.finish(None)

    def finish(self, outcome: Outcome | None) -> None:
        """The relay is over: back to the pool or closed; the client closed unless it can go on."""
        if self.mode != "response":
            return
        self.mode = "done"
        if self.watch is not None:
            self.watch.relays.discard(self)
        client, request = self._client, self._request
        self._detach()
        if outcome is STALE and self.retryable and client is not None and not client.gone:
            self.abort()
            client.retry = True  # the gate sends the request once more, on a fresh connection
            client.relay_ended()
            return
        client_ok, reusable = outcome if isinstance(outcome, tuple) else (False, False)
        if reusable and self.pool is not None and not self.transport.is_closing():
            self.mode = "idle"
            self.since = time.monotonic()
            self.reused = True
            self.parser.next_response()
            if not self.pool.put(self):
                self.close()
        elif isinstance(outcome, tuple):
            self.close()  # ended whole; what is still buffered goes out
        else:
            self.abort()  # failed, timed out or the client went: nothing here is worth flushing
        if client is not None:
            if not (client_ok and request is not None and request.keep_alive):
                client.close()
            client.relay_ended()

    def _detach(self) -> None:
        client = self._client
        if client is not None:
            if client.relay is self:
                client.relay = None
            if client.peer is self:
                client.peer = None  # its hold on this connection's reading goes just below
        self._client = self._request = None
        holds = self._holds
        if holds:  # (inline: this runs once per request)
            holds.discard("request")
            holds.discard("peer")
            if not holds and not self.closed:
                self.transport.resume_reading()

    def _ended(self) -> None:
        """The server sent its last byte (or the connection is lost)."""
        if self.mode != "response":
            if self.mode in ("idle", "raw"):
                self._wake()
            return
        if self.head_sent and self.parser.framing == "close":
            # A body delimited by the end of the connection: it ended here.
            assert self._client is not None
            if self._framing == "chunked":
                self._client.write(LAST_CHUNK)
            self.finish((not self._close_client, False))
        elif self.parser.untouched:
            self.finish(STALE)
        else:
            self.finish(None)  # the server closed in the middle

    def _response_bytes(self, data: bytes) -> None:
        if self.meter is not None:
            self.meter.bytes_received += len(data)
        parser = self.parser
        try:
            parser.feed(data)
        except ProtocolError:
            self.finish(None)
            return
        client = self._client
        assert client is not None
        out: list[bytes] = []
        events = parser.events
        while events:
            event = events.popleft()
            if isinstance(event, Head):
                if self.head_sent:  # a second response without a request
                    self._fail(client, out)
                    return
                out.append(self._head(event))
                if self._framing == "none" and self._request is not None and self._request.method == b"HEAD":
                    # The parser expects the body the head describes: not reused.
                    client.write(b"".join(out))
                    self.finish((True, False))
                    return
            elif event is END:
                if not self.head_sent:
                    self._fail(client, out)
                    return
                if self._framing == "chunked":
                    out.append(LAST_CHUNK)
                client.write(b"".join(out))
                self.finish((not self._close_client, parser.reusable and not self.eof))
                return
            elif not self.head_sent:  # a body before its head
                self._fail(client, out)
                return
            elif self._framing != "none":
                out.append(chunk(event) if self._framing == "chunked" else event)
        if parser.upgraded:  # a protocol switch on a proxied request
            self._fail(client, out)
            return
        if out:
            client.write(b"".join(out))
        if self.head_sent:
            self.touch()  # the response timeout bounds the head; then it is the idle one

    def _fail(self, client: ClientConn, out: list[bytes]) -> None:
        if out:
            client.write(b"".join(out))
        self.finish(None)

    def _head(self, response: Head) -> bytes:
        request = self._request
        assert request is not None
        kept = [(n, v) for n, v in response.headers if n not in HOP_HEADERS]
        framing = self.parser.framing
        if request.method == b"HEAD":
            framing = "none"
        self._close_client = False
        if framing in ("chunked", "close"):
            if request.version == "1.1":
                kept.append((b"transfer-encoding", b"chunked"))
                framing = "chunked"
            else:
                self._close_client = True  # an HTTP/1.0 client: the body ends with the connection
        self._framing = framing
        self.head_sent = True
        return head_bytes(b"HTTP/1.1 %d %s" % (response.status, response.reason), kept)

    # ----- tunnels ---------------------------------------------------------------------------

    def splice(self, client: ClientConn, tunnel: Tunnel) -> None:
        """From now on what the server sends goes to `client` as it comes."""
        self.mode = "tunnel"
        self._client, self._tunnel = client, tunnel
        self.set_peer(client)
        self.release("raw")
        leftover, self._raw = bytes(self._raw), bytearray()
        tunnel.hand_over("upstream", leftover, client, ended=self.eof)


async def connect(host: str, port: int, timeout: float) -> UpstreamConn:
    loop = asyncio.get_running_loop()
    _, conn = await asyncio.wait_for(loop.create_connection(UpstreamConn, host, port), timeout)
    return conn


async def accept(sock: Any) -> ClientConn:
    """A client connection on a socket handed over from Chromium's namespace."""
    loop = asyncio.get_running_loop()
    _, conn = await loop.connect_accepted_socket(ClientConn, sock=sock)
    return conn


async def client_server(on_connect: Callable[[ClientConn], Any]) -> asyncio.Server:
    """A loopback listener (sandbox off); `on_connect` gets each new client connection."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: ClientConn(on_connect), "127.0.0.1", 0)


__all__ = [
    "RETRY",
    "STALE",
    "Activity",
    "ClientConn",
    "Meter",
    "Pool",
    "Tunnel",
    "UpstreamConn",
    "Watch",
    "accept",
    "client_server",
    "connect",
]
