"""The egress gate under abuse, on loopback, without Chromium: what a hostile page can make it
hold open (connections, tasks, buffered bytes, resolver threads) is bounded, rule changes cut
what the old rules let through, and the address rules' corner cases."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
import pytest_asyncio

from agents.egress import EgressSettings
from agents.egress.gate import Gate, SessionEgress, Upstream, local_addresses
from agents.egress.resolver import DnsServerResolver, ResolveError, Resolver
from agents.egress.rules import address_block_reason, as_ip
from agents.netguard import NetworkPolicy, normalize_domain

pytestmark = pytest.mark.asyncio(loop_scope="session")

LOCAL = frozenset({"127.0.0.1"})


# ----- loopback stand-ins ---------------------------------------------------------------------


@dataclass
class Target:
    """A TCP server on 127.0.0.1: `mode` "silent" (reads, never answers), "stall" (never reads),
    "http" (answers every request, keep-alive) or "echo"."""

    mode: str
    accepted: int = 0
    open: int = 0
    bodies: list[bytes] = field(default_factory=list)
    server: asyncio.Server | None = None
    writers: set[asyncio.StreamWriter] = field(default_factory=set)
    stopped: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.sockets[0].getsockname()[1]

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.open += 1
        self.writers.add(writer)
        try:
            if self.mode == "stall":
                transport = writer.transport
                assert isinstance(transport, asyncio.Transport)
                transport.pause_reading()  # the kernel's buffers fill, then TCP stops the sender
                await self.stopped.wait()
            elif self.mode == "http":
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    body = b""
                    if b"chunked" in head.lower():
                        while True:
                            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
                            chunk = await reader.readexactly(size + 2)
                            if size == 0:
                                break
                            body += chunk[:-2]
                    self.bodies.append(head.split(b"\r\n", 1)[0] + b" " + body)
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    await writer.drain()
            else:
                while data := await reader.read(65536):
                    if self.mode == "echo":
                        writer.write(data)
                        await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            self.open -= 1
            self.writers.discard(writer)
            writer.close()

    def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        self.stopped.set()
        for writer in list(self.writers):
            writer.close()


async def _target(mode: str) -> Target:
    target = Target(mode)
    target.server = await asyncio.start_server(target.handle, "127.0.0.1", 0)
    return target


@pytest_asyncio.fixture(loop_scope="session")
async def make_gate() -> AsyncIterator[Callable[..., Awaitable[tuple[Gate, SessionEgress, NetworkPolicy]]]]:
    gates: list[Gate] = []

    async def make(
        *, upstream: Upstream | None = None, allowed: frozenset[str] = LOCAL, **settings: Any
    ) -> tuple[Gate, SessionEgress, NetworkPolicy]:
        gate = Gate(EgressSettings(sandbox="off", **settings))
        await gate.start(control_socket=None)
        gates.append(gate)
        slot = await gate.new_slot()
        policy = NetworkPolicy(allowed_private_hosts=allowed, on_blocked=lambda url, reason: None)
        gate.bind(slot.token, policy=policy, upstream=upstream)
        return gate, slot, policy

    yield make
    for gate in gates:
        await gate.stop()


async def _client(slot: SessionEgress) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", slot.port)


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def _until(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(0.05)
    return check()


# ----- connections are bounded ----------------------------------------------------------------


async def test_requests_abandoned_by_the_client_leave_nothing_behind(make_gate: Callable[..., Any]) -> None:
    gate, slot, _ = await make_gate()
    silent = await _target("silent")
    fds, tasks = _fds(), len(asyncio.all_tasks())
    for i in range(100):
        _, writer = await _client(slot)
        if i % 2:
            writer.write(f"GET http://127.0.0.1:{silent.port}/{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        else:
            writer.write(f"CONNECT 127.0.0.1:{silent.port} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        await writer.drain()
        await asyncio.sleep(0.005)
        writer.close()
    assert await _until(lambda: silent.accepted == 100)
    # Each request is cut when its client goes away (a tunnel after the grace), both sides.
    assert await _until(lambda: silent.open == 0 and not slot.writers and not slot.upstream_writers), (
        silent.open, len(slot.writers), len(slot.upstream_writers))  # fmt: skip
    assert await _until(lambda: _fds() <= fds + 5 and len(asyncio.all_tasks()) <= tasks + 2), (
        _fds() - fds, len(asyncio.all_tasks()) - tasks)  # fmt: skip
    silent.stop()


async def test_release_closes_the_sessions_upstream_connections_and_tasks(make_gate: Callable[..., Any]) -> None:
    gate, slot, _ = await make_gate()
    silent = await _target("silent")
    clients = []
    for i in range(20):
        reader, writer = await _client(slot)
        request = f"GET http://127.0.0.1:{silent.port}/ HTTP/1.1\r\nHost: x\r\n\r\n" if i % 2 else (
            f"CONNECT 127.0.0.1:{silent.port} HTTP/1.1\r\nHost: x\r\n\r\n")  # fmt: skip
        writer.write(request.encode())
        clients.append((reader, writer))
    assert await _until(lambda: silent.open == 20 and len(slot.upstream_writers) == 20)
    gate.release(slot.token)
    assert await _until(lambda: silent.open == 0 and not slot.tasks and not slot.writers)
    for reader, writer in clients:
        await asyncio.wait_for(reader.read(), 5)  # the client side is closed too
        writer.close()
    silent.stop()


async def test_response_and_idle_timeouts_and_the_connection_cap(make_gate: Callable[..., Any]) -> None:
    gate, slot, _ = await make_gate(response_timeout_s=0.3, idle_timeout_s=0.5, max_connections=4)
    silent = await _target("silent")
    reader, writer = await _client(slot)
    writer.write(f"GET http://127.0.0.1:{silent.port}/ HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert (await asyncio.wait_for(reader.read(), 5)).startswith(b"HTTP/1.1 504")
    writer.close()
    reader, writer = await _client(slot)
    writer.write(f"CONNECT 127.0.0.1:{silent.port} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).startswith(b"HTTP/1.1 200")
    started = time.monotonic()
    assert await asyncio.wait_for(reader.read(), 5) == b""  # idle: cut
    assert 0.4 < time.monotonic() - started < 3
    writer.close()
    held = [await _client(slot) for _ in range(4)]
    assert await _until(lambda: len(slot.writers) == 4)
    reader, writer = await _client(slot)
    assert await asyncio.wait_for(reader.read(), 5) == b""  # over the cap: closed at once
    assert (slot.token, "", "connection_limit") in gate.decisions
    for _, held_writer in held:
        held_writer.close()
    silent.stop()


async def test_a_large_upload_to_a_server_that_does_not_read_is_not_buffered(make_gate: Callable[..., Any]) -> None:
    gate, slot, _ = await make_gate()
    stall = await _target("stall")
    reader, writer = await _client(slot)
    size = 100 * 1024 * 1024
    writer.write(
        f"POST http://127.0.0.1:{stall.port}/up HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n".encode()
    )
    chunk = b"x" * 65536
    pushed = 0
    peak = 0

    async def push() -> None:
        nonlocal pushed
        while pushed < size:
            writer.write(chunk)
            await writer.drain()
            pushed += len(chunk)

    pusher = asyncio.ensure_future(push())
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and not pusher.done():
        peak = max(peak, sum(w.transport.get_write_buffer_size() for w in slot.upstream_writers))
        await asyncio.sleep(0.02)
    pusher.cancel()
    writer.close()
    # Back-pressure: the client is stopped after what the kernel buffers hold.
    assert pushed < 32 * 1024 * 1024, pushed
    assert peak < 2 * 1024 * 1024, peak
    stall.stop()


async def test_an_upload_stuck_on_a_server_that_does_not_read_ends_at_the_idle_timeout(
    make_gate: Callable[..., Any],
) -> None:
    """The gate's side of a stuck upload ends (task, client and upstream connections) when
    nothing moved for the idle timeout, although the server never drains what was sent."""
    gate, slot, _ = await make_gate(idle_timeout_s=0.5, response_timeout_s=5)
    stall = await _target("stall")
    reader, writer = await _client(slot)
    size = 100 * 1024 * 1024
    writer.write(
        f"POST http://127.0.0.1:{stall.port}/up HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n".encode()
    )

    async def push() -> None:
        while True:
            writer.write(b"x" * 65536)
            await writer.drain()

    pusher = asyncio.ensure_future(push())
    assert await _until(lambda: len(slot.upstream_writers) == 1)
    assert await _until(lambda: not slot.tasks and not slot.writers and not slot.upstream_writers, 5), (
        len(slot.tasks), len(slot.writers), len(slot.upstream_writers))  # fmt: skip
    pusher.cancel()
    writer.close()
    stall.stop()


# ----- plain HTTP: keep-alive, chunked bodies --------------------------------------------------


async def test_plain_http_reuses_upstream_connections_and_forwards_chunked_bodies(
    make_gate: Callable[..., Any],
) -> None:
    gate, slot, _ = await make_gate()
    http = await _target("http")
    for n in range(3):  # three client connections, one request each (as Chromium spreads them)
        reader, writer = await _client(slot)
        writer.write(
            f"POST http://127.0.0.1:{http.port}/u{n} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n".encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200"), head
        assert await reader.readexactly(2) == b"ok"
        writer.close()
    assert http.bodies == [f"POST /u{n} HTTP/1.1 hello world".encode() for n in range(3)]
    assert http.accepted == 1  # one upstream connection, kept alive
    gate.release(slot.token)
    assert await _until(lambda: http.open == 0)
    http.stop()


# ----- rule changes ---------------------------------------------------------------------------


async def test_a_rule_change_cuts_the_tunnels_opened_under_the_old_rules(make_gate: Callable[..., Any]) -> None:
    gate, slot, policy = await make_gate()
    echo = await _target("echo")
    reader, writer = await _client(slot)
    writer.write(f"CONNECT 127.0.0.1:{echo.port} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    writer.write(b"ping")
    assert await asyncio.wait_for(reader.readexactly(4), 5) == b"ping"
    policy.avoid_domains = ["127.0.0.1"]
    assert await asyncio.wait_for(reader.read(), 5) == b""
    assert await _until(lambda: echo.open == 0)
    writer.close()
    # The same value again is no change: an open tunnel stays.
    policy.avoid_domains = []
    reader, writer = await _client(slot)
    writer.write(f"CONNECT 127.0.0.1:{echo.port} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    policy.avoid_domains = []
    writer.write(b"pong")
    assert await asyncio.wait_for(reader.readexactly(4), 5) == b"pong"
    writer.close()
    echo.stop()


async def test_the_gate_reads_the_sessions_current_policy_rules_and_a_reload_cuts_tunnels(
    make_gate: Callable[..., Any],
) -> None:
    from policies.engine import validate_rules
    from sessions_app.runtime import WorkerRuntime

    gate, slot, policy = await make_gate()
    echo = await _target("echo")
    audits: list[str] = []

    async def audit(**kwargs: Any) -> None:
        audits.append(kwargs["url"])

    runner = SimpleNamespace(session_id="s1", policy=policy, _audit=audit,
                             policy_rules=validate_rules({"domainRules": {"mode": "allow_all", "entries": []}}))  # fmt: skip
    runtime = SimpleNamespace(_bound_rules={})
    WorkerRuntime.bind_policy_rules(runtime, runner)  # type: ignore[arg-type]
    reader, writer = await _client(slot)
    writer.write(f"CONNECT 127.0.0.1:{echo.port} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).startswith(b"HTTP/1.1 200")
    # The next task's reload brings a rule blocking the host: the tunnel goes, a new one is refused.
    runner.policy_rules = validate_rules({"domainRules": {"mode": "blocklist", "entries": [{"pattern": "127.0.0.1"}]}})
    WorkerRuntime.bind_policy_rules(runtime, runner)  # type: ignore[arg-type]
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    reader, writer = await _client(slot)
    writer.write(f"CONNECT 127.0.0.1:{echo.port} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).startswith(b"HTTP/1.1 403")
    writer.close()
    echo.stop()


# ----- name resolution ------------------------------------------------------------------------


@dataclass
class SilentDns(asyncio.DatagramProtocol):
    """A DNS server that never answers, or answers from `table` (A records)."""

    table: dict[str, str] = field(default_factory=dict)
    queries: list[tuple[float, str]] = field(default_factory=list)
    transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        labels, offset = [], 12
        while data[offset]:
            labels.append(data[offset + 1 : offset + 1 + data[offset]].decode())
            offset += 1 + data[offset]
        name = ".".join(labels)
        qtype = struct.unpack("!H", data[offset + 1 : offset + 3])[0]
        self.queries.append((time.monotonic(), name))
        if name in self.table and qtype == 1:
            answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 30, 4) + socket.inet_aton(self.table[name])
            header = data[:2] + struct.pack("!HHHHH", 0x8180, 1, 1, 0, 0)
            self.transport.sendto(header + data[12 : offset + 5] + answer, addr)
        elif name in self.table:
            self.transport.sendto(data[:2] + struct.pack("!HHHHH", 0x8180, 1, 0, 0, 0) + data[12 : offset + 5], addr)

    @property
    def port(self) -> int:
        return self.transport.get_extra_info("sockname")[1]


async def _dns(table: dict[str, str] | None = None) -> SilentDns:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_datagram_endpoint(lambda: SilentDns(table or {}), local_addr=("127.0.0.1", 0))
    return protocol


async def test_system_lookups_never_wait_on_the_loops_default_executor() -> None:
    loop = asyncio.get_running_loop()
    busy = ThreadPoolExecutor(max_workers=1)
    loop.set_default_executor(busy)  # the worker's DB pool, every thread taken
    blocker = loop.run_in_executor(None, time.sleep, 3)
    resolver = Resolver(timeout_s=2)
    try:
        started = time.monotonic()
        assert as_ip("127.0.0.1") in await resolver.resolve("localhost")
        assert time.monotonic() - started < 1.5
    finally:
        resolver.close()
        await blocker
        loop.set_default_executor(ThreadPoolExecutor())


async def test_a_dns_server_that_never_answers_costs_one_bounded_lookup_per_name(
    make_gate: Callable[..., Any],
) -> None:
    dns = await _dns()
    resolver = DnsServerResolver("127.0.0.1", dns.port, timeout_s=0.5)
    started = time.monotonic()
    results = await asyncio.gather(*(resolver.resolve("slow.example") for _ in range(20)), return_exceptions=True)
    assert all(isinstance(r, ResolveError) for r in results)
    assert time.monotonic() - started < 1.5
    assert len(dns.queries) == 2  # coalesced: one A and one AAAA question
    with pytest.raises(ResolveError):
        await resolver.resolve("slow.example")
    assert len(dns.queries) == 2  # the failure is cached
    # One session resolving many names asks a few at a time.
    gate, slot, policy = await make_gate(resolver=("127.0.0.1", dns.port), resolve_timeout_s=0.4, max_lookups=2)
    dns.queries.clear()
    names = [f"n{i}.example" for i in range(8)]
    await asyncio.gather(*(
        gate.judge(policy, scheme="http", host=n, port=80, url=f"http://{n}/", slot=slot) for n in names
    ), return_exceptions=True)  # fmt: skip
    first = dns.queries[0][0]
    assert len([t for t, _ in dns.queries if t - first < 0.3]) <= 4  # 2 names x (A, AAAA)
    assert {n for _, n in dns.queries} == set(names)
    dns.transport.close()


# ----- the managed upstream -------------------------------------------------------------------


async def test_targets_sent_to_the_managed_upstream_are_resolved_and_checked_here(
    make_gate: Callable[..., Any],
) -> None:
    dns = await _dns({"intranet.corp.test": "10.1.2.3", "site.test": "127.0.0.1"})
    proxy = await _target("http")  # answers every request: stands for the managed pool
    upstream = Upstream(kind="http", host="127.0.0.1", port=proxy.port)
    gate, slot, policy = await make_gate(
        upstream=upstream,
        resolver=("127.0.0.1", dns.port),
        trusted_upstreams=(f"127.0.0.1:{proxy.port}",),
        allowed=frozenset({"site.test"}),
    )
    for target, reason in [
        ("intranet", "single_label_name"),
        ("localhost", "loopback_address"),
        ("intranet.corp.test", "private_address"),
    ]:
        reader, writer = await _client(slot)
        writer.write(f"GET http://{target}/x HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 403") and f"X-Enigma-Blocked: {reason}".encode() in head, (target, head)
        writer.close()
    assert proxy.accepted == 0
    # An allowed target goes through, named by the address the gate checked, no userinfo.
    reader, writer = await _client(slot)
    writer.write(b"GET http://user:pw@site.test:8080/p?q=1 HTTP/1.1\r\nHost: site.test:8080\r\n\r\n")
    assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).startswith(b"HTTP/1.1 200")
    writer.close()
    assert proxy.bodies == [b"GET http://127.0.0.1:8080/p?q=1 HTTP/1.1 "]
    dns.transport.close()
    proxy.stop()


# ----- own services and address corner cases --------------------------------------------------


async def test_the_gates_own_ports_and_own_services_on_other_interfaces_are_refused(
    make_gate: Callable[..., Any],
) -> None:
    http = await _target("http")
    others = [ip for ip in local_addresses() if not ip.is_loopback and ip.version == 4]
    gate, slot, policy = await make_gate(
        own_addresses=(f"0.0.0.0:{http.port}",),
        allowed=frozenset({"127.0.0.1", *(str(ip) for ip in others)}),
    )
    other_slot = await gate.new_slot()
    for host, port in [
        ("127.0.0.1", other_slot.port),
        ("127.0.0.1", gate.base_port),
        *((str(ip), http.port) for ip in others),
    ]:
        with pytest.raises(Exception) as info:
            await gate.judge(policy, scheme="http", host=host, port=port, url=f"http://{host}:{port}/", slot=slot)
        assert getattr(info.value, "reason", None) == "own_service", (host, port)
    assert http.accepted == 0
    http.stop()


@pytest.mark.parametrize("address", ["fec0::1", "64:ff9b:1::808:808", "64:ff9b:1::7f00:1", "64:ff9b::7f00:1"])
async def test_site_local_and_local_use_nat64_addresses_are_private(address: str) -> None:
    ip = as_ip(address)
    assert ip is not None
    assert address_block_reason(ip) is not None


async def test_avoid_domain_entries_use_uts46_non_transitional() -> None:
    assert normalize_domain("faß.de") == "xn--fa-hia.de"
    assert normalize_domain("https://www.Bücher.example/") == "xn--bcher-kva.example"


async def test_urls_in_decisions_and_block_reports_are_cut(make_gate: Callable[..., Any]) -> None:
    reported: list[str] = []
    gate, slot, policy = await make_gate()
    policy.on_blocked = lambda url, reason: reported.append(url)
    policy.avoid_domains = ["avoided.test"]
    reader, writer = await _client(slot)
    writer.write(f"GET http://avoided.test/{'a' * 5000} HTTP/1.1\r\nHost: avoided.test\r\n\r\n".encode())
    assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).startswith(b"HTTP/1.1 403")
    writer.close()
    assert reported and all(len(url) <= 200 for url in reported)
    assert all(len(target) <= 200 for _, target, _ in gate.decisions)
