"""The egress gate: the HTTP proxy every browser connection passes, deciding once per connection.

Why our own small proxy and not proxy.py or mitmproxy: the decision needs per-session state
(avoidDomains, policy rules, the session's upstream, byte counts) keyed by the context's port, its
own resolver, a connect to the checked address, and chaining to http and socks5 upstreams with
credentials, on the worker's existing asyncio loop. mitmproxy's core is built around TLS
interception (which we do not want) and its own process; proxy.py runs its own event loop and
process model and its plugins see a request after its connection logic. What is left is small:
HTTP/1.1 framing is llhttp (Node's C parser, through httptools, in `http1.py`; it replaced h11,
which was about 40% of the gate's CPU). Connections are asyncio protocols (`wire.py`), not
streams: a response is parsed and relayed in the upstream connection's own callback and ends
there (pooled or closed), a tunnel is two callbacks writing to each other, and the coroutine per
client connection wakes once per request, to judge and send it.

Sessions are told apart by port: each browser context's proxy is its own port (inside Chromium's
namespace the forwarder listens on a range and hands each connection over with the port it came
in on; with the sandbox off the gate listens on one loopback port per context). Per-context proxy
credentials would do too, but Playwright then intercepts every request of the context to answer
the 407 challenge, which costs more than the gate itself.

Per request on a client connection:
- a connection on no session's port (the browser-wide proxy: Chromium's own background traffic)
  -> 407, nothing forwarded, nothing billed;
- `CONNECT host:port` (HTTPS, ws and wss) -> judged by host and port, then a tunnel;
- an absolute-form `GET http://...` -> judged by URL, forwarded, the response relayed; each
  redirect hop is a new request, judged again.
The judgement: scheme, avoidDomains, the policy's domain rules (a guardrail domain not approved
for this session is blocked), then the address: the gate resolves the name itself, checks every
address (`rules.target_block_reason`) and connects to one of those. Through a customer's upstream
proxy the upstream resolves names (literal addresses are still checked), and the upstream's own
address is checked like a target. Through the managed upstream (operator-configured, possibly
inside our network) the gate resolves and checks the target itself and sends the upstream the
checked address.

Bounds: a session has at most `max_connections` open client connections; a plain-HTTP response
must start within `response_timeout_s` (and the wait ends as soon as the client goes away; one
periodic sweep checks every relay's deadline, no timer per request); a
tunnel or body with no byte either way for `idle_timeout_s` is cut, and when one side of a tunnel
ends the other is cut after `tunnel_grace_s`; request bodies are forwarded with back-pressure (a
server that does not read stops the client, nothing piles up here). `release()` cancels all of a
session's connections, client and upstream. Plain-HTTP upstream connections are kept alive and
reused within the session (every request is still judged).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import functools
import ipaddress
import logging
import socket
import struct
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httptools

from agents.netguard import NetworkPolicy, matches_avoided, run_callback

from . import EgressSettings
from .http1 import END, HOP_HEADERS, LAST_CHUNK, Head, ProtocolError, chunk, head_bytes, response_bytes
from .resolver import DnsServerResolver, ResolveError, Resolver
from .rules import (
    IPAddress,
    OwnServices,
    address_block_reason,
    allow_list,
    as_ip,
    own_services,
    parse_host,
    split_host_port,
    target_block_reason,
)
from .wire import RETRY, ClientConn, Pool, Tunnel, UpstreamConn, Watch, accept, client_server, connect

logger = logging.getLogger(__name__)

MAX_LOGGED_URL = 200  # URLs in decisions and block reports are cut to this
POOL_IDLE_S = 30.0  # an idle kept-alive upstream connection older than this is not reused
POOL_MAX = 16  # idle upstream connections kept per session
# A request's body framing stays: a chunked body is sent on chunked.
_REQUEST_HOP_HEADERS = HOP_HEADERS - {b"transfer-encoding"}
_PROXY_AUTH = [(b"Proxy-Authenticate", b'Basic realm="enigma"')]
_BAD_HOST_CHARS = frozenset("/\\@ ")
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def cut(text: str) -> str:
    return text if len(text) <= MAX_LOGGED_URL else text[: MAX_LOGGED_URL - 3] + "..."


@dataclass(frozen=True)
class Upstream:
    kind: str  # "http" | "socks5"
    host: str
    port: int
    username: str = ""
    password: str = ""

    @classmethod
    def from_playwright(cls, proxy: dict[str, str]) -> Upstream:
        """From Playwright-style settings: {"server": "socks5://h:p", "username", "password"}."""
        parts = urlsplit(proxy["server"] if "://" in proxy["server"] else f"http://{proxy['server']}")
        kind = "socks5" if parts.scheme in ("socks5", "socks5h", "socks") else "http"
        return cls(
            kind=kind,
            host=parse_host(parts.hostname or ""),
            port=parts.port or (1080 if kind == "socks5" else 8080),
            username=proxy.get("username") or unquote(parts.username or ""),
            password=proxy.get("password") or unquote(parts.password or ""),
        )


@dataclass
class SessionEgress:
    """One browser context's state at the gate: its port, the session policy, counters, and
    everything open on its behalf (so that release can close it all)."""

    token: str  # the port, as text (decisions are keyed by it)
    port: int
    policy: NetworkPolicy | None = None
    upstream: Upstream | None = None
    bytes_sent: int = 0
    bytes_received: int = 0
    recent_blocks: collections.deque[tuple[str, str]] = field(default_factory=lambda: collections.deque(maxlen=32))
    writers: set[ClientConn] = field(default_factory=set)  # client connections
    upstream_writers: set[UpstreamConn] = field(default_factory=set)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    pool: Pool = field(default_factory=lambda: Pool(POOL_MAX, POOL_IDLE_S))  # idle kept-alive upstreams
    lookups: asyncio.Semaphore | None = None
    server: asyncio.AbstractServer | None = None  # sandbox off: this slot's own listener

    def close_connections(self) -> None:
        """Cut every connection of the session, client and upstream (tasks are cancelled)."""
        current = asyncio.current_task()
        for task in list(self.tasks):
            if task is not current:
                task.cancel()
        for writer in [*self.writers, *self.upstream_writers]:
            writer.close()
        self.pool.clear()


class Blocked(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Gate:
    def __init__(self, settings: EgressSettings) -> None:
        self.settings = settings
        self.resolver: Resolver = (
            DnsServerResolver(*settings.resolver, timeout_s=settings.resolve_timeout_s)
            if settings.resolver
            else Resolver(timeout_s=settings.resolve_timeout_s)
        )
        self.own = OwnServices()
        self._trusted: frozenset[tuple[str, int]] = frozenset()
        self._local: frozenset[IPAddress] = frozenset()
        self._gate_ports: set[int] = set()  # sandbox off: the gate's own loopback listeners
        self.sessions: dict[str, SessionEgress] = {}
        # (token, target, reason or None): the last decisions, for tests and debugging.
        self.decisions: collections.deque[tuple[str, str, str | None]] = collections.deque(maxlen=2000)
        self._servers: list[asyncio.AbstractServer] = []
        self._control: socket.socket | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._free_ports: collections.deque[int] = collections.deque()
        self._watch = Watch()  # plain-HTTP relays in flight, for their timeouts
        self.base_port: int | None = None  # the browser-wide proxy port (no session)

    # ----- lifecycle ------------------------------------------------------------------------

    async def start(self, *, control_socket: Path | None, base_port: int = 0, ports: int = 0) -> None:
        """Listen: on a Unix control socket for sockets handed over from Chromium's namespace
        (which listens on base_port .. base_port+ports-1), or (sandbox off) on loopback ports."""
        self._local = frozenset(local_addresses())
        self.own = await self._resolve_own(self.settings.own_addresses)
        trusted = set()
        for entry in self.settings.trusted_upstreams:
            host, port = split_host_port(entry)
            if port and port.isdigit():
                trusted.add((host, int(port)))
        self._trusted = frozenset(trusted)
        self._spawn(self._sweep())
        if control_socket is None:
            server = await client_server(lambda conn: self._spawn(self._serve(conn)))
            self._servers.append(server)
            self.base_port = server.sockets[0].getsockname()[1]
            self._gate_ports.add(self.base_port)
            return
        self.base_port = base_port
        self._free_ports.extend(range(base_port + 1, base_port + ports))
        control = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        control.bind(str(control_socket))
        control.listen(16)
        control.setblocking(False)
        self._control = control
        self._spawn(self._accept_controls(control))

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        if self._control is not None:
            self._control.close()
        for task in list(self._tasks):
            task.cancel()
        for token in list(self.sessions):
            self.release(token)
        self.resolver.close()

    async def _resolve_own(self, entries: tuple[str, ...]) -> OwnServices:
        triples = []
        system = Resolver()
        try:
            for entry in entries:
                host, port = split_host_port(entry)
                if not host or not port or not port.isdigit():
                    continue
                try:
                    addresses: tuple[IPAddress, ...] = await system.resolve(host)
                except ResolveError:
                    addresses = ()
                triples.append((host, int(port), addresses))
        finally:
            system.close()
        return own_services(triples, tuple(self._local))

    async def _sweep(self) -> None:
        """Time out the relays whose deadline passed (one timer for all of them)."""
        shortest = min(self.settings.response_timeout_s, self.settings.idle_timeout_s)
        interval = min(max(shortest / 8, 0.02), 1.0)
        while True:
            await asyncio.sleep(interval)
            self._watch.sweep()

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _accept_controls(self, control: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            conn, _ = await loop.sock_accept(control)
            conn.setblocking(False)
            loop.add_reader(conn.fileno(), self._receive_sockets, conn)

    def _receive_sockets(self, conn: socket.socket) -> None:
        try:
            msg, fds, _, _ = socket.recv_fds(conn, 64, 64)
        except BlockingIOError:
            return
        except OSError:
            msg, fds = b"", []
        if not msg and not fds:
            asyncio.get_running_loop().remove_reader(conn.fileno())
            conn.close()
            return
        port = struct.unpack("!H", msg[:2])[0] if len(msg) >= 2 else 0
        for fd in fds:
            sock = socket.socket(fileno=fd)
            sock.setblocking(False)
            self._spawn(self._serve_socket(sock, self.sessions.get(str(port))))

    async def _serve_socket(self, sock: socket.socket, slot: SessionEgress | None) -> None:
        await self._serve(await accept(sock), slot)

    # ----- sessions -------------------------------------------------------------------------

    async def new_slot(self) -> SessionEgress:
        """A port for a new browser context; it may connect once a policy is bound."""
        if self._control is not None:
            if not self._free_ports:
                raise RuntimeError("the egress gate has no free context port left")
            port = self._free_ports.popleft()
            slot = SessionEgress(token=str(port), port=port)
        else:
            # The callback spawns our own task (asyncio's would log each cancelled connection).
            token = ""
            server = await client_server(lambda conn: self._spawn(self._serve(conn, self.sessions.get(token))))
            port = server.sockets[0].getsockname()[1]
            token = str(port)
            slot = SessionEgress(token=token, port=port, server=server)
            self._gate_ports.add(port)
        slot.lookups = asyncio.Semaphore(self.settings.max_lookups)
        self.sessions[slot.token] = slot
        return slot

    def bind(self, token: str, *, policy: NetworkPolicy, upstream: Upstream | None) -> None:
        slot = self.sessions[token]
        slot.policy, slot.upstream = policy, upstream

        def rules_changed() -> None:
            if self.sessions.get(token) is slot and slot.policy is policy:
                slot.close_connections()  # what was let through under the old rules
            elif rules_changed in policy.listeners:
                policy.listeners.remove(rules_changed)

        policy.listeners.append(rules_changed)

    def release(self, token: str) -> None:
        """Forget a slot, cut its open connections (client and upstream) and free its port."""
        slot = self.sessions.pop(token, None)
        if slot is None:
            return
        slot.close_connections()
        slot.policy = None
        if slot.server is not None:
            slot.server.close()
            self._gate_ports.discard(slot.port)
        elif self._control is not None:
            self._free_ports.append(slot.port)

    # ----- the decision ---------------------------------------------------------------------

    async def judge(
        self,
        policy: NetworkPolicy | None,
        *,
        scheme: str,
        host: str,
        port: int,
        url: str,
        upstream: Upstream | None = None,
        slot: SessionEgress | None = None,
    ) -> tuple[IPAddress, ...]:
        """Return the checked addresses to connect to (empty through a customer's upstream,
        which resolves the name), or raise Blocked."""
        addresses = self._judge_name(policy, scheme=scheme, host=host, port=port, url=url, upstream=upstream)
        if addresses is None:
            addresses = await self._resolve(host, slot)
        assert policy is not None
        return self._judge_addresses(policy, host, port, addresses)

    def judge_now(
        self, policy: NetworkPolicy | None, *, scheme: str, host: str, port: int, url: str
    ) -> tuple[IPAddress, ...] | None:
        """judge() of a direct connection without waiting: None when the name needs a lookup
        that is not cached (nothing is blocked or reported then)."""
        addresses = self._judge_name(policy, scheme=scheme, host=host, port=port, url=url, upstream=None)
        if addresses is None:
            addresses = self.resolver.cached(host)
            if addresses is None:
                return None
        assert policy is not None
        return self._judge_addresses(policy, host, port, addresses)

    def _judge_name(
        self,
        policy: NetworkPolicy | None,
        *,
        scheme: str,
        host: str,
        port: int,
        url: str,
        upstream: Upstream | None,
    ) -> tuple[IPAddress, ...] | None:
        """The checks by name (raise Blocked); the addresses when they are known without a
        lookup (empty: a customer's upstream resolves the name), None when a lookup is needed."""
        if policy is None:
            raise Blocked("no_policy")
        if scheme not in _DEFAULT_PORTS:
            raise Blocked(f"scheme:{scheme or 'none'}")
        if not host or not _BAD_HOST_CHARS.isdisjoint(host) or not 0 < port < 65536:
            raise Blocked("invalid_url")
        avoided = matches_avoided(host, policy.avoid_domains)
        if avoided is not None:
            raise Blocked(f"avoided_domain:{avoided}")
        if policy.domain_rule is not None:
            self._apply_domain_rules(policy, host, url)
        literal = as_ip(host)
        managed = upstream is not None and (upstream.host, upstream.port) in self._trusted
        if upstream is not None and literal is None and not managed:
            return ()
        single_label = literal is None and "." not in host and host != "localhost"
        if managed and single_label and not allow_list(policy.allowed_private_hosts).allows(host, port):
            raise Blocked("single_label_name")  # the managed network's own search domains
        return (literal,) if literal is not None else None

    def _judge_addresses(
        self, policy: NetworkPolicy, host: str, port: int, addresses: tuple[IPAddress, ...]
    ) -> tuple[IPAddress, ...]:
        if not addresses:
            return addresses  # through a customer's upstream
        if port in self._gate_ports and any(
            ip.is_loopback or ip.is_unspecified or ip in self._local for ip in addresses
        ):
            raise Blocked("own_service")  # the gate's own listeners: another session's port
        allowed = allow_list(policy.allowed_private_hosts)
        reason = target_block_reason(host, port, addresses, allowed=allowed, own=self.own)
        if reason is not None:
            raise Blocked(reason)
        return addresses

    async def _resolve(self, host: str, slot: SessionEgress | None) -> tuple[IPAddress, ...]:
        try:
            if slot is None or slot.lookups is None:
                return await self.resolver.resolve(host)
            async with slot.lookups:  # a page resolving many names waits for its own turns
                return await self.resolver.resolve(host)
        except ResolveError:
            raise Blocked("dns_unresolvable") from None

    def _apply_domain_rules(self, policy: NetworkPolicy, host: str, url: str) -> None:
        assert policy.domain_rule is not None
        decision = policy.domain_rule(url)
        action = getattr(decision, "action", "allow")
        if action == "allow" or (action == "guardrail" and host in policy.approved_hosts):
            return
        if policy.on_policy_block is not None:
            run_callback(policy.on_policy_block, cut(url), decision)
        raise Blocked(f"policy:{getattr(decision, 'rule', '') or action}")

    async def _check_upstream(
        self, upstream: Upstream, policy: NetworkPolicy, slot: SessionEgress
    ) -> tuple[IPAddress, ...]:
        addresses = await self._resolve(upstream.host, slot)
        if (upstream.host, upstream.port) in self._trusted:
            return addresses
        reason = target_block_reason(
            upstream.host,
            upstream.port,
            addresses,
            allowed=allow_list(policy.allowed_private_hosts),
            own=self.own,
        )
        if reason is not None:
            raise Blocked(f"proxy:{reason}")
        return addresses

    def _refuse(self, slot: SessionEgress, target: str, reason: str) -> None:
        target = cut(target)
        self.decisions.append((slot.token, target, reason))
        slot.recent_blocks.append((target, reason))
        policy = slot.policy
        if policy is not None and policy.on_blocked is not None:
            run_callback(policy.on_blocked, target, reason)

    # ----- connections ----------------------------------------------------------------------

    async def _serve(self, client: ClientConn, slot: SessionEgress | None = None) -> None:
        task = asyncio.current_task()
        if slot is not None:
            if len(slot.writers) >= self.settings.max_connections:
                self.decisions.append((slot.token, "", "connection_limit"))
                client.close()
                return
            slot.writers.add(client)
            if task is not None:
                slot.tasks.add(task)
            client.on_request = functools.partial(self._forward_now, slot)
        try:
            while True:
                event = await client.next()
                if event is RETRY:
                    last = client.last_request
                    if last is None or slot is None or not await self._forward(client, slot, last, reuse=False):
                        return
                    continue
                if not isinstance(event, Head):
                    return
                if slot is None:
                    # Chromium's own traffic (or a released context): refused, never billed.
                    self.decisions.append(("", cut(event.target.decode("latin-1")), "no_session"))
                    await _drain_body(client)
                    client.write(response_bytes(407, "Proxy Authentication Required", b"", _PROXY_AUTH))
                    await client.drain()
                    return
                if client.relay is not None:
                    await client.idle()  # a pipelined request waits for the answer before it
                    if client.retry or client.closed:
                        return  # (under a stale connection: the client retries on a new one)
                if client.closing:
                    return
                if event.method == b"CONNECT":
                    await self._tunnel(client, slot, event)
                    return
                if client.parser.upgraded:  # an Upgrade on a plain request: not something a proxy relays
                    return
                if not await self._forward(client, slot, event):
                    return
        except (ProtocolError, ConnectionError, asyncio.IncompleteReadError, OSError, TimeoutError):
            logger.debug("gate connection ended", exc_info=True)
            await client.idle()  # the answer being relayed still goes out (bounded by its timeouts)
        finally:
            if slot is not None:
                slot.writers.discard(client)
                if task is not None:
                    slot.tasks.discard(task)
            client.close()

    async def _tunnel(self, client: ClientConn, slot: SessionEgress, event: Head) -> None:
        target = event.target.decode("latin-1")
        host, port_text = split_host_port(target)
        port = int(port_text) if port_text and port_text.isdigit() else 0
        upstream = await self._open_or_answer(
            client, slot, target, scheme="https", host=host, port=port, url=f"https://{target}/"
        )
        if upstream is None:
            return
        try:
            await _drain_body(client)  # a CONNECT has no body; its end is read
            client.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await self._splice(client, upstream, slot)
        finally:
            slot.upstream_writers.discard(upstream)
            upstream.close()

    async def _splice(self, client: ClientConn, upstream: UpstreamConn, slot: SessionEgress) -> None:
        """Pipe both ways until one side ends (the other then gets a short grace) or nothing
        moved either way for the idle timeout."""
        tunnel = Tunnel(slot)
        client.splice(upstream, tunnel)
        upstream.splice(client, tunnel)
        idle = self.settings.idle_timeout_s
        while not tunnel.ended.done():
            wait_s = max(0.05, tunnel.activity.last + idle - time.monotonic())
            await asyncio.wait([tunnel.ended], timeout=wait_s)
            if not tunnel.ended.done() and time.monotonic() - tunnel.activity.last >= idle:
                return
        await asyncio.wait([tunnel.both_ended], timeout=self.settings.tunnel_grace_s)

    def _forward_now(self, slot: SessionEgress, client: ClientConn) -> bool:
        """Send a request that needs no waiting, from the client connection's own callback (no
        task wakes): no body, a direct connection, an address known without a lookup and a
        kept-alive connection to it, as for most of a page's sub-resources. A blocked one is
        answered here. False leaves the request to the connection's coroutine (nothing was sent,
        answered or reported)."""
        events = client.parser.events
        policy = slot.policy
        if len(events) != 2 or events[1] is not END or policy is None or slot.upstream is not None:
            return False
        event = events[0]
        if (
            not isinstance(event, Head)
            or event.method == b"CONNECT"
            or not event.keep_alive
            or client.parser.upgraded
            or not client.writable
        ):
            return False
        _, bodiless = _framing(event)
        if not bodiless:
            return False
        url, scheme, host, port, path = _target(event)
        if scheme != "http":
            return False
        try:
            addresses = self.judge_now(policy, scheme=scheme, host=host, port=port, url=url)
        except Blocked as blocked:
            client.ready(), client.ready()  # the head and its end: the request is answered here
            self._answer_blocked(client, slot, url, blocked.reason)
            return True
        if addresses is None:
            return False
        destination, keys = self._keys(slot, addresses, host, port, tunnel=False)
        up = _pooled(slot, keys, destination)
        if up is None:
            return False  # a new connection: the coroutine opens it (and judges once more)
        client.ready(), client.ready()
        self.decisions.append((slot.token, cut(url), None))
        head = self._begin(client, slot, event, path, host, port, up, bodiless=True)
        _write(up, slot, head)
        up.touch(self.settings.response_timeout_s)
        return True

    async def _forward(self, client: ClientConn, slot: SessionEgress, event: Head, *, reuse: bool = True) -> bool:
        """Send one plain-HTTP request on (its response is relayed by the upstream connection's
        callbacks); return whether the client connection can go on."""
        url, scheme, host, port, path = _target(event)
        upstream = await self._open_or_answer(
            client,
            slot,
            url,
            scheme=(scheme or "none") if scheme != "https" else "https-in-plain",
            host=host,
            port=port,
            url=url,
            reuse=reuse,
        )
        if upstream is None:
            return True
        return await self._send(client, slot, event, path, host, port, upstream)

    def _begin(
        self,
        client: ClientConn,
        slot: SessionEgress,
        event: Head,
        path: bytes,
        host: str,
        port: int,
        up: UpstreamConn,
        *,
        bodiless: bool,
    ) -> bytes:
        """The request's head as it goes on (rebuilt from the parsed parts, never the raw
        target), with `up` set to relay the response to `client`."""
        headers = [(n, v) for n, v in event.headers if n not in _REQUEST_HOP_HEADERS]
        if up.absolute:
            # The managed upstream gets the address the gate checked.
            authority = up.destination if ":" not in up.destination else f"[{up.destination}]"
            if port != 80:
                authority = f"{authority}:{port}"
            target = f"http://{authority}".encode("latin-1") + path
            assert slot.upstream is not None
            if slot.upstream.username:
                headers.append((b"Proxy-Authorization", _basic(slot.upstream.username, slot.upstream.password)))
        else:
            target = path
        if event.value(b"host") is None:
            authority = f"[{host}]" if ":" in host else host
            headers.insert(0, (b"host", (authority if port == 80 else f"{authority}:{port}").encode("latin-1")))
        up.meter, up.pool, up.watch = slot, slot.pool, self._watch
        up.retryable = up.reused and bodiless
        client.last_request, client.closing = event, not event.keep_alive
        up.relay(client, event, idle_s=self.settings.idle_timeout_s)
        return head_bytes(event.method + b" " + target + b" HTTP/1.1", headers)

    async def _send(
        self,
        client: ClientConn,
        slot: SessionEgress,
        event: Head,
        path: bytes,
        host: str,
        port: int,
        up: UpstreamConn,
    ) -> bool:
        """Send the request (what is already here in one write: head and body together) and
        hand the response to `up`'s callbacks. False when the request could not be sent whole."""
        chunked, bodiless = _framing(event)
        head = self._begin(client, slot, event, path, host, port, up, bodiless=bodiless)
        if not bodiless:
            up.hold("request")  # the answer is read once the request is sent, as a client would
        out = [head]
        sent = False
        try:
            while True:
                piece = client.ready()
                if piece is None:
                    if out:
                        _write(up, slot, b"".join(out))
                        out = []
                        await up.drain()  # back-pressure: a server that does not read stops the client
                        up.touch()
                    piece = await client.next()
                if piece is None or isinstance(piece, Head):
                    return False
                if piece is END:
                    if chunked:
                        out.append(LAST_CHUNK)
                    break
                out.append(chunk(piece) if chunked else piece)
            if out:
                _write(up, slot, b"".join(out))
            if not bodiless:
                await up.drain()
                up.release("request")
            up.touch(self.settings.response_timeout_s)
            sent = True
            return True
        finally:
            if not sent:
                up.finish(None)

    def _answer_blocked(self, client: ClientConn, slot: SessionEgress, target: str, reason: str) -> None:
        self._refuse(slot, target, reason)
        body = f"Blocked by the network policy: {reason}\n".encode()
        headers = [(b"X-Enigma-Blocked", reason.encode()[:200]), (b"Content-Type", b"text/plain")]
        client.write(response_bytes(403, "Forbidden", body, headers))

    async def _open_or_answer(
        self,
        client: ClientConn,
        slot: SessionEgress,
        target: str,
        *,
        scheme: str,
        host: str,
        port: int,
        url: str,
        reuse: bool = True,
    ) -> UpstreamConn | None:
        """Open the connection to `target`, or answer the client (403 blocked, 502 failed)."""
        try:
            tunnel = scheme == "https"
            if scheme != ("https" if tunnel else "http"):
                raise Blocked("invalid_url" if scheme == "none" else f"scheme:{scheme}")
            up = await self._open(slot, scheme=scheme, host=host, port=port, url=url, tunnel=tunnel, reuse=reuse)
        except Blocked as blocked:
            await _drain_body(client)
            self._answer_blocked(client, slot, target, blocked.reason)
            await client.drain()
            return None
        except (TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
            self.decisions.append((slot.token, cut(target), None))
            logger.debug("upstream of %s failed: %s", cut(target), exc)
            await _drain_body(client)
            client.write(response_bytes(502, "Bad Gateway", b""))
            await client.drain()
            return None
        self.decisions.append((slot.token, cut(target), None))
        if slot.policy is None:  # released meanwhile
            up.close()
            raise ConnectionResetError("session released")
        slot.upstream_writers.add(up)
        up.registry = slot.upstream_writers
        return up

    def _keys(
        self, slot: SessionEgress, addresses: tuple[IPAddress, ...], host: str, port: int, *, tunnel: bool
    ) -> tuple[str, list[tuple[str, str, int]]]:
        """Where the request names (the checked address, or the host through a customer's
        upstream), and the pools a connection for it may come from."""
        upstream = slot.upstream
        destination = _text(addresses[0]) if addresses else host
        if upstream is None:
            return destination, [("direct", _text(ip), port) for ip in addresses]
        if upstream.kind == "http" and not tunnel:
            return destination, [("http", f"{upstream.host}:{upstream.port}", 0)]
        return destination, [("socks5", destination, port)] if upstream.kind == "socks5" else []

    async def _open(
        self,
        slot: SessionEgress,
        *,
        scheme: str,
        host: str,
        port: int,
        url: str,
        tunnel: bool,
        reuse: bool = True,
    ) -> UpstreamConn:
        """Judge the target, then connect: directly to a checked address, or through the
        session's upstream (whose own address is checked). For plain HTTP through an http
        upstream the connection goes to the upstream itself (absolute-form requests). Plain
        HTTP takes a kept-alive connection of the session when there is one."""
        policy = slot.policy
        upstream = slot.upstream
        addresses = await self.judge(policy, scheme=scheme, host=host, port=port, url=url, upstream=upstream, slot=slot)
        timeout = self.settings.connect_timeout_s
        destination, keys = self._keys(slot, addresses, host, port, tunnel=tunnel)
        if not tunnel and reuse:
            pooled = _pooled(slot, keys, destination)
            if pooled is not None:
                return pooled
        if upstream is None:
            conn = await _connect_any(addresses, port, timeout)
            if not tunnel:
                peer = conn.transport.get_extra_info("peername")
                conn.key = ("direct", str(as_ip(peer[0]) if peer else destination), port)
            conn.destination = destination
            return conn
        assert policy is not None
        proxy_addresses = await self._check_upstream(upstream, policy, slot)
        conn = await _connect_any(proxy_addresses, upstream.port, timeout)
        try:
            if upstream.kind == "socks5":
                await asyncio.wait_for(_socks5_connect(conn, upstream, destination, port), timeout)
            elif tunnel:
                await asyncio.wait_for(_http_connect(conn, upstream, destination, port), timeout)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
            conn.close()
            raise OSError(f"upstream proxy refused {destination}:{port}: {exc}") from exc
        conn.key = keys[0] if keys and not tunnel else None
        conn.destination = destination
        conn.absolute = upstream.kind == "http" and not tunnel
        return conn


def local_addresses() -> list[IPAddress]:
    """This machine's interface addresses (IPv4 from /proc/net/fib_trie, IPv6 from
    /proc/net/if_inet6), for the own-services check; loopback ones included."""
    found: list[IPAddress] = []
    try:
        with open("/proc/net/fib_trie") as trie:
            lines = trie.read().splitlines()
        for previous, line in zip(lines, lines[1:], strict=False):
            if "/32 host LOCAL" in line:
                ip = as_ip(previous.strip().split()[-1])
                if ip is not None and ip not in found:
                    found.append(ip)
    except OSError:
        pass
    try:
        with open("/proc/net/if_inet6") as inet6:
            for line in inet6:
                raw = line.split()[0]
                ip = as_ip(":".join(raw[i : i + 4] for i in range(0, 32, 4)))
                if ip is not None and ip not in found:
                    found.append(ip)
    except OSError:
        pass
    return found


# ----- helpers ------------------------------------------------------------------------------


def _target(event: Head) -> tuple[str, str, str, int, bytes]:
    """A plain request's (url, scheme, host, port, path), parsed by llhttp's URL parser."""
    url = event.target.decode("latin-1")
    try:
        parts = httptools.parse_url(event.target)
        scheme = (parts.schema or b"").decode("latin-1").lower()
        host = parse_host((parts.host or b"").decode("latin-1"))
        port = parts.port or _DEFAULT_PORTS.get(scheme, 0)
        path = (parts.path or b"/") + (b"?" + parts.query if parts.query else b"")
    except (httptools.HttpParserInvalidURLError, ValueError):
        return url, "", "", 0, b"/"
    return url, scheme, host, port, path


def _framing(event: Head) -> tuple[bool, bool]:
    """(chunked, bodiless) of a request."""
    chunked = event.chunked
    return chunked, not chunked and event.value(b"content-length") in (None, b"0")


def _pooled(slot: SessionEgress, keys: list[tuple[str, str, int]], destination: str) -> UpstreamConn | None:
    for key in keys:
        pooled = slot.pool.take(key)
        if pooled is not None:
            pooled.destination = destination
            return pooled
    return None


@functools.lru_cache(maxsize=4096)
def _text(ip: IPAddress) -> str:
    return str(ip)


def _write(upstream: UpstreamConn, slot: SessionEgress, data: bytes) -> None:
    slot.bytes_sent += len(data)
    upstream.write(data)


async def _drain_body(client: ClientConn) -> None:
    """Read the rest of the current request (a refused one's body goes nowhere)."""
    while client.parser.body_pending:
        if await client.next() is None:
            return


async def _connect_any(addresses: tuple[IPAddress, ...], port: int, timeout: float) -> UpstreamConn:
    last: Exception = OSError("no address")
    for ip in addresses:
        try:
            return await connect(str(ip), port, timeout)
        except (TimeoutError, OSError) as exc:
            last = exc
    raise last


def _basic(username: str, password: str) -> bytes:
    return b"Basic " + base64.b64encode(f"{username}:{password}".encode())


async def _http_connect(conn: UpstreamConn, upstream: Upstream, host: str, port: int) -> None:
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
    if upstream.username:
        lines.append("Proxy-Authorization: " + _basic(upstream.username, upstream.password).decode())
    conn.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    head = await conn.read_until(b"\r\n\r\n")
    status = head.split(b" ", 2)
    if len(status) < 2 or not status[1].startswith(b"2"):
        raise ValueError(f"CONNECT answered {head.splitlines()[0]!r}")


async def _socks5_connect(conn: UpstreamConn, upstream: Upstream, host: str, port: int) -> None:
    """RFC 1928 CONNECT, with RFC 1929 username/password when the upstream has credentials."""
    methods = b"\x00\x02" if upstream.username else b"\x00"
    conn.write(b"\x05" + bytes([len(methods)]) + methods)
    version, method = await conn.read_exactly(2)
    if version != 5 or method not in methods:
        raise ValueError("socks5 proxy offered no acceptable method")
    if method == 2:
        user, password = upstream.username.encode(), upstream.password.encode()
        conn.write(b"\x01" + bytes([len(user)]) + user + bytes([len(password)]) + password)
        _, status = await conn.read_exactly(2)
        if status != 0:
            raise ValueError("socks5 proxy refused the credentials")
    ip = as_ip(host)
    if isinstance(ip, ipaddress.IPv4Address):
        address = b"\x01" + ip.packed
    elif isinstance(ip, ipaddress.IPv6Address):
        address = b"\x04" + ip.packed
    else:
        name = host.encode("idna")
        address = b"\x03" + bytes([len(name)]) + name
    conn.write(b"\x05\x01\x00" + address + struct.pack("!H", port))
    _, reply, _, kind = await conn.read_exactly(4)
    if reply != 0:
        raise ValueError(f"socks5 CONNECT failed with code {reply}")
    length = {1: 4, 4: 16}.get(kind)
    if length is None:
        length = (await conn.read_exactly(1))[0]
    await conn.read_exactly(length + 2)


__all__ = ["Blocked", "Gate", "SessionEgress", "Upstream", "address_block_reason", "local_addresses"]
