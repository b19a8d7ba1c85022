"""The egress gate: the HTTP proxy every browser connection passes, deciding once per connection.

Why our own small proxy and not proxy.py or mitmproxy: the decision needs per-session state
(avoidDomains, policy rules, the session's upstream, byte counts) keyed by the context's port, its
own resolver, a connect to the checked address, and chaining to http and socks5 upstreams with
credentials, on the worker's existing asyncio loop. mitmproxy's core is built around TLS
interception (which we do not want) and its own process; proxy.py runs its own event loop and
process model and its plugins see a request after its connection logic. What is left is small:
HTTP/1.1 framing is h11 (a maintained sans-IO parser), tunnels are byte pipes.

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
address (`rules.target_block_reason`) and connects to one of those. Through an upstream proxy the
upstream resolves names (literal addresses are still checked), and the upstream's own address is
checked like a target unless the operator configured it.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import ipaddress
import logging
import socket
import struct
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import h11

from agents.netguard import NetworkPolicy, matches_avoided, run_callback

from . import EgressSettings
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

logger = logging.getLogger(__name__)

READ_SIZE = 65536
MAX_HEADER_BYTES = 64 * 1024
_HOP_HEADERS = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


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
    """One browser context's state at the gate: its port, the session policy, counters."""

    token: str  # the port, as text (decisions are keyed by it)
    port: int
    policy: NetworkPolicy | None = None
    upstream: Upstream | None = None
    bytes_sent: int = 0
    bytes_received: int = 0
    recent_blocks: collections.deque[tuple[str, str]] = field(default_factory=lambda: collections.deque(maxlen=32))
    writers: set[asyncio.StreamWriter] = field(default_factory=set)
    server: asyncio.AbstractServer | None = None  # sandbox off: this slot's own listener


class Blocked(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Gate:
    def __init__(self, settings: EgressSettings) -> None:
        self.settings = settings
        self.resolver: Resolver = DnsServerResolver(*settings.resolver) if settings.resolver else Resolver()
        self.own = OwnServices()
        self._trusted: frozenset[tuple[str, int]] = frozenset()
        self.sessions: dict[str, SessionEgress] = {}
        # (token, target, reason or None): the last decisions, for tests and debugging.
        self.decisions: collections.deque[tuple[str, str, str | None]] = collections.deque(maxlen=2000)
        self._servers: list[asyncio.AbstractServer] = []
        self._control: socket.socket | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._free_ports: collections.deque[int] = collections.deque()
        self.base_port: int | None = None  # the browser-wide proxy port (no session)

    # ----- lifecycle ------------------------------------------------------------------------

    async def start(self, *, control_socket: Path | None, base_port: int = 0, ports: int = 0) -> None:
        """Listen: on a Unix control socket for sockets handed over from Chromium's namespace
        (which listens on base_port .. base_port+ports-1), or (sandbox off) on loopback ports."""
        self.own = await self._resolve_own(self.settings.own_addresses)
        trusted = set()
        for entry in self.settings.trusted_upstreams:
            host, port = split_host_port(entry)
            if port and port.isdigit():
                trusted.add((host, int(port)))
        self._trusted = frozenset(trusted)
        if control_socket is None:
            server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
            self._servers.append(server)
            self.base_port = server.sockets[0].getsockname()[1]
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

    async def _resolve_own(self, entries: tuple[str, ...]) -> OwnServices:
        triples = []
        for entry in entries:
            host, port = split_host_port(entry)
            if not host or not port or not port.isdigit():
                continue
            try:
                addresses: tuple[IPAddress, ...] = await Resolver().resolve(host)
            except ResolveError:
                addresses = ()
            triples.append((host, int(port), addresses))
        return own_services(triples)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
        reader, writer = await asyncio.open_connection(sock=sock)
        await self._serve(reader, writer, slot)

    # ----- sessions -------------------------------------------------------------------------

    async def new_slot(self) -> SessionEgress:
        """A port for a new browser context; it may connect once a policy is bound."""
        if self._control is not None:
            if not self._free_ports:
                raise RuntimeError("the egress gate has no free context port left")
            port = self._free_ports.popleft()
            slot = SessionEgress(token=str(port), port=port)
        else:
            server = await asyncio.start_server(
                lambda r, w: self._serve(r, w, self.sessions.get(token)), "127.0.0.1", 0
            )
            port = server.sockets[0].getsockname()[1]
            token = str(port)
            slot = SessionEgress(token=token, port=port, server=server)
        self.sessions[slot.token] = slot
        return slot

    def bind(self, token: str, *, policy: NetworkPolicy, upstream: Upstream | None) -> None:
        slot = self.sessions[token]
        slot.policy, slot.upstream = policy, upstream

    def release(self, token: str) -> None:
        """Forget a slot, cut its open connections and free its port."""
        slot = self.sessions.pop(token, None)
        if slot is None:
            return
        for writer in list(slot.writers):
            writer.close()
        if slot.server is not None:
            slot.server.close()
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
        apply_domain_rules: bool = True,
    ) -> tuple[IPAddress, ...]:
        """Return the checked addresses to connect to (empty through an upstream that resolves
        the name), or raise Blocked."""
        if policy is None:
            raise Blocked("no_policy")
        if scheme not in _DEFAULT_PORTS:
            raise Blocked(f"scheme:{scheme or 'none'}")
        if not host or any(c in host for c in "/\\@ ") or not 0 < port < 65536:
            raise Blocked("invalid_url")
        avoided = matches_avoided(host, policy.avoid_domains)
        if avoided is not None:
            raise Blocked(f"avoided_domain:{avoided}")
        if apply_domain_rules and policy.domain_rule is not None:
            self._apply_domain_rules(policy, host, url)
        allowed = allow_list(policy.allowed_private_hosts)
        literal = as_ip(host)
        if upstream is not None and literal is None:
            return ()
        try:
            addresses = (literal,) if literal is not None else await self.resolver.resolve(host)
        except ResolveError:
            raise Blocked("dns_unresolvable") from None
        reason = target_block_reason(host, port, addresses, allowed=allowed, own=self.own)
        if reason is not None:
            raise Blocked(reason)
        return addresses

    def _apply_domain_rules(self, policy: NetworkPolicy, host: str, url: str) -> None:
        assert policy.domain_rule is not None
        decision = policy.domain_rule(url)
        action = getattr(decision, "action", "allow")
        if action == "allow" or (action == "guardrail" and host in policy.approved_hosts):
            return
        if policy.on_policy_block is not None:
            run_callback(policy.on_policy_block, url, decision)
        raise Blocked(f"policy:{getattr(decision, 'rule', '') or action}")

    async def _check_upstream(self, upstream: Upstream, policy: NetworkPolicy) -> tuple[IPAddress, ...]:
        if (upstream.host, upstream.port) in self._trusted:
            try:
                return await self.resolver.resolve(upstream.host)
            except ResolveError:
                raise Blocked("proxy:dns_unresolvable") from None
        try:
            addresses = await self.resolver.resolve(upstream.host)
        except ResolveError:
            raise Blocked("proxy:dns_unresolvable") from None
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
        self.decisions.append((slot.token, target, reason))
        slot.recent_blocks.append((target, reason))
        policy = slot.policy
        if policy is not None and policy.on_blocked is not None:
            run_callback(policy.on_blocked, target, reason)

    # ----- connections ----------------------------------------------------------------------

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, slot: SessionEgress | None = None
    ) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        if slot is not None:
            slot.writers.add(writer)
        try:
            while True:
                event = await _next_event(conn, reader)
                if isinstance(event, h11.ConnectionClosed) or not isinstance(event, h11.Request):
                    return
                if slot is None:
                    # Chromium's own traffic (or a released context): refused, never billed.
                    self.decisions.append(("", event.target.decode("latin-1")[:200], "no_session"))
                    await _drain_body(conn, reader)
                    await _respond(conn, writer, 407, b"", [(b"Proxy-Authenticate", b'Basic realm="enigma"')])
                    return
                if event.method == b"CONNECT":
                    await self._tunnel(conn, reader, writer, slot, event)
                    return
                if not await self._forward(conn, reader, writer, slot, event):
                    return
                if not _next_cycle(conn):
                    return
        except (h11.ProtocolError, ConnectionError, asyncio.IncompleteReadError, OSError):
            logger.debug("gate connection ended", exc_info=True)
        finally:
            if slot is not None:
                slot.writers.discard(writer)
            writer.close()

    async def _tunnel(
        self,
        conn: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        slot: SessionEgress,
        event: h11.Request,
    ) -> None:
        target = event.target.decode("latin-1")
        host, port_text = split_host_port(target)
        port = int(port_text) if port_text and port_text.isdigit() else 0
        opened = await self._open_or_answer(
            conn, reader, writer, slot, target, scheme="https", host=host, port=port, url=f"https://{target}/"
        )
        if opened is None:
            return
        upstream_reader, upstream_writer = opened
        await _drain_body(conn, reader)  # a CONNECT has no body; h11 wants its end read
        writer.write(conn.send(h11.Response(status_code=200, reason=b"Connection established", headers=[])))
        leftover = conn.trailing_data[0]
        if leftover:
            upstream_writer.write(leftover)
            slot.bytes_sent += len(leftover)
        try:
            await asyncio.gather(
                _pipe(reader, upstream_writer, slot, sent=True),
                _pipe(upstream_reader, writer, slot, sent=False),
            )
        finally:
            upstream_writer.close()

    async def _forward(
        self,
        conn: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        slot: SessionEgress,
        event: h11.Request,
    ) -> bool:
        """Relay one plain-HTTP request; return whether the client connection can go on."""
        url = event.target.decode("latin-1")
        try:
            parts = urlsplit(url)
            scheme, host = parts.scheme.lower(), parse_host(parts.hostname or "")
            port = parts.port or _DEFAULT_PORTS.get(scheme, 0)
        except ValueError:
            scheme, host, port = "", "", 0
        opened = await self._open_or_answer(
            conn,
            reader,
            writer,
            slot,
            url,
            scheme=(scheme or "none") if scheme != "https" else "https-in-plain",
            host=host,
            port=port,
            url=url,
        )
        if opened is None:
            return True
        upstream_reader, upstream_writer = opened
        try:
            return await self._relay(conn, reader, writer, slot, event, parts, upstream_reader, upstream_writer)
        finally:
            upstream_writer.close()

    async def _relay(
        self,
        conn: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        slot: SessionEgress,
        event: h11.Request,
        parts: Any,
        upstream_reader: asyncio.StreamReader,
        upstream_writer: asyncio.StreamWriter,
    ) -> bool:
        upstream = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEADER_BYTES)
        headers = [(n, v) for n, v in event.headers if n not in _HOP_HEADERS]
        headers.append((b"Connection", b"close"))
        via_http_proxy = slot.upstream is not None and slot.upstream.kind == "http"
        if via_http_proxy:
            target = event.target
            assert slot.upstream is not None
            if slot.upstream.username:
                headers.append((b"Proxy-Authorization", _basic(slot.upstream.username, slot.upstream.password)))
        else:
            target = ((parts.path or "/") + (f"?{parts.query}" if parts.query else "")).encode("latin-1")
        _send(upstream, upstream_writer, slot, h11.Request(method=event.method, target=target, headers=headers))
        while True:
            body_event = await _next_event(conn, reader)
            if isinstance(body_event, h11.Data):
                _send(upstream, upstream_writer, slot, h11.Data(data=body_event.data))
            elif isinstance(body_event, h11.EndOfMessage):
                _send(upstream, upstream_writer, slot, h11.EndOfMessage())
                break
            else:
                return False
        await upstream_writer.drain()
        while True:
            response = await _next_event(upstream, upstream_reader, slot)
            if isinstance(response, h11.InformationalResponse):
                continue
            if not isinstance(response, h11.Response):
                await _respond(conn, writer, 502, b"")
                return False
            break
        kept = [(n, v) for n, v in response.headers if n not in _HOP_HEADERS]
        writer.write(conn.send(h11.Response(status_code=response.status_code, reason=response.reason, headers=kept)))
        while True:
            part = await _next_event(upstream, upstream_reader, slot)
            if isinstance(part, h11.Data):
                writer.write(conn.send(h11.Data(data=part.data)))
                await writer.drain()
            elif isinstance(part, h11.EndOfMessage):
                writer.write(conn.send(h11.EndOfMessage()))
                await writer.drain()
                return True
            else:
                return False

    async def _open_or_answer(
        self,
        conn: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        slot: SessionEgress,
        target: str,
        *,
        scheme: str,
        host: str,
        port: int,
        url: str,
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """Open the connection to `target`, or answer the client (403 blocked, 502 failed)."""
        try:
            tunnel = scheme == "https"
            if scheme != ("https" if tunnel else "http"):
                raise Blocked("invalid_url" if scheme == "none" else f"scheme:{scheme}")
            opened = await self._open(slot, scheme=scheme, host=host, port=port, url=url, tunnel=tunnel)
        except Blocked as blocked:
            self._refuse(slot, target, blocked.reason)
            await _drain_body(conn, reader)
            body = f"Blocked by the network policy: {blocked.reason}\n".encode()
            headers = [(b"X-Enigma-Blocked", blocked.reason.encode()[:200]), (b"Content-Type", b"text/plain")]
            await _respond(conn, writer, 403, body, headers)
            return None
        except (TimeoutError, OSError) as exc:
            self.decisions.append((slot.token, target, None))
            logger.debug("upstream of %s failed: %s", target, exc)
            await _drain_body(conn, reader)
            await _respond(conn, writer, 502, b"")
            return None
        self.decisions.append((slot.token, target, None))
        return opened

    async def _open(
        self,
        slot: SessionEgress,
        *,
        scheme: str,
        host: str,
        port: int,
        url: str,
        tunnel: bool,
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Judge the target, then connect: directly to a checked address, or through the
        session's upstream (whose own address is checked). For plain HTTP through an http
        upstream the connection goes to the upstream itself (absolute-form requests)."""
        policy = slot.policy
        upstream = slot.upstream
        addresses = await self.judge(policy, scheme=scheme, host=host, port=port, url=url, upstream=upstream)
        timeout = self.settings.connect_timeout_s
        if upstream is None:
            return await _connect_any(addresses, port, timeout)
        assert policy is not None
        proxy_addresses = await self._check_upstream(upstream, policy)
        reader, writer = await _connect_any(proxy_addresses, upstream.port, timeout)
        destination = str(addresses[0]) if addresses else host
        try:
            if upstream.kind == "socks5":
                await asyncio.wait_for(_socks5_connect(reader, writer, upstream, destination, port), timeout)
            elif tunnel:
                await asyncio.wait_for(_http_connect(reader, writer, upstream, destination, port), timeout)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
            writer.close()
            raise OSError(f"upstream proxy refused {destination}:{port}: {exc}") from exc
        return reader, writer


# ----- helpers ------------------------------------------------------------------------------


async def _next_event(conn: h11.Connection, reader: asyncio.StreamReader, slot: SessionEgress | None = None) -> Any:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        data = await reader.read(READ_SIZE)
        if slot is not None:
            slot.bytes_received += len(data)
        conn.receive_data(data)


def _send(conn: h11.Connection, writer: asyncio.StreamWriter, slot: SessionEgress, event: Any) -> None:
    data = conn.send(event) or b""
    slot.bytes_sent += len(data)
    writer.write(data)


async def _drain_body(conn: h11.Connection, reader: asyncio.StreamReader) -> None:
    while conn.their_state is h11.SEND_BODY:
        event = await _next_event(conn, reader)
        if isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
            return


async def _respond(
    conn: h11.Connection,
    writer: asyncio.StreamWriter,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    all_headers = [*(headers or []), (b"Content-Length", str(len(body)).encode())]
    writer.write(conn.send(h11.Response(status_code=status, headers=all_headers)))
    if body:
        writer.write(conn.send(h11.Data(data=body)))
    writer.write(conn.send(h11.EndOfMessage()))
    await writer.drain()


def _next_cycle(conn: h11.Connection) -> bool:
    if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
        conn.start_next_cycle()
        return True
    return False


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, slot: SessionEgress, *, sent: bool) -> None:
    try:
        while True:
            data = await reader.read(READ_SIZE)
            if not data:
                break
            if sent:
                slot.bytes_sent += len(data)
            else:
                slot.bytes_received += len(data)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        if writer.can_write_eof():
            try:
                writer.write_eof()
            except OSError:
                pass


async def _connect_any(
    addresses: tuple[IPAddress, ...], port: int, timeout: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    last: Exception = OSError("no address")
    for ip in addresses:
        try:
            return await asyncio.wait_for(asyncio.open_connection(str(ip), port), timeout)
        except (TimeoutError, OSError) as exc:
            last = exc
    raise last


def _basic(username: str, password: str) -> bytes:
    return b"Basic " + base64.b64encode(f"{username}:{password}".encode())


async def _http_connect(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, upstream: Upstream, host: str, port: int
) -> None:
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
    if upstream.username:
        lines.append("Proxy-Authorization: " + _basic(upstream.username, upstream.password).decode())
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    head = await reader.readuntil(b"\r\n\r\n")
    status = head.split(b" ", 2)
    if len(status) < 2 or not status[1].startswith(b"2"):
        raise ValueError(f"CONNECT answered {head.splitlines()[0]!r}")


async def _socks5_connect(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, upstream: Upstream, host: str, port: int
) -> None:
    """RFC 1928 CONNECT, with RFC 1929 username/password when the upstream has credentials."""
    methods = b"\x00\x02" if upstream.username else b"\x00"
    writer.write(b"\x05" + bytes([len(methods)]) + methods)
    version, method = await reader.readexactly(2)
    if version != 5 or method not in methods:
        raise ValueError("socks5 proxy offered no acceptable method")
    if method == 2:
        user, password = upstream.username.encode(), upstream.password.encode()
        writer.write(b"\x01" + bytes([len(user)]) + user + bytes([len(password)]) + password)
        _, status = await reader.readexactly(2)
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
    writer.write(b"\x05\x01\x00" + address + struct.pack("!H", port))
    _, reply, _, kind = await reader.readexactly(4)
    if reply != 0:
        raise ValueError(f"socks5 CONNECT failed with code {reply}")
    length = {1: 4, 4: 16}.get(kind)
    if length is None:
        length = (await reader.readexactly(1))[0]
    await reader.readexactly(length + 2)


__all__ = ["Blocked", "Gate", "SessionEgress", "Upstream", "address_block_reason"]
