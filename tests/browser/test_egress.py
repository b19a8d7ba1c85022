"""The egress gate: what allowed sites get (everything), the allow-list's ports, the product's own
services, the customer's upstream proxies, policy domain rules on sub-resources, byte counts."""

from __future__ import annotations

import asyncio
import base64
import struct
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import websockets

from agents.browser import BlockedNavigation, BrowserHost, NetworkPolicy
from policies.engine import evaluate_domain, validate_rules

from .conftest import Blocked, LocalSite

pytestmark = pytest.mark.asyncio(loop_scope="session")

# A cross-origin request from the page that settles whether or not it got through.
FETCH = "url => fetch(url, {mode: 'no-cors'}).then(() => 'sent', () => 'failed')"


# ----- local stand-ins for a customer's proxies -----------------------------------------------


@dataclass
class TinyProxy:
    """An http proxy (CONNECT and absolute-form) or a socks5 proxy requiring credentials; it
    records what it was asked for."""

    kind: str
    user: str = "cust-user"
    password: str = "cust-pass-7"
    seen: list[str] = field(default_factory=list)
    refused: int = 0
    server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.sockets[0].getsockname()[1]

    def settings(self) -> dict[str, str]:
        scheme = "socks5" if self.kind == "socks5" else "http"
        return {"server": f"{scheme}://127.0.0.1:{self.port}", "username": self.user, "password": self.password}

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if self.kind == "socks5":
                await self._socks(reader, writer)
            else:
                await self._http(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        request_line, *header_lines = head.split("\r\n")
        headers = dict(line.split(": ", 1) for line in header_lines if ": " in line)
        expected = "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        if headers.get("Proxy-Authorization") != expected:
            self.refused += 1
            writer.write(b"HTTP/1.1 407 Auth\r\nProxy-Authenticate: Basic realm=x\r\nContent-Length: 0\r\n\r\n")
            return
        method, target, _ = request_line.split(" ")
        self.seen.append(f"{method} {target}")
        if method == "CONNECT":
            host, port = target.rsplit(":", 1)
            up_reader, up_writer = await asyncio.open_connection(host.strip("[]"), int(port))
            writer.write(b"HTTP/1.1 200 OK\r\n\r\n")
            await _splice(reader, writer, up_reader, up_writer)
            return
        body = b"<title>Via the customer proxy</title>"
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    async def _socks(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, count = await reader.readexactly(2)
        methods = await reader.readexactly(count)
        if 2 not in methods:
            writer.write(b"\x05\xff")
            return
        writer.write(b"\x05\x02")
        _, ulen = await reader.readexactly(2)
        user = (await reader.readexactly(ulen)).decode()
        plen = (await reader.readexactly(1))[0]
        password = (await reader.readexactly(plen)).decode()
        if (user, password) != (self.user, self.password):
            self.refused += 1
            writer.write(b"\x01\x01")
            return
        writer.write(b"\x01\x00")
        _, _, _, kind = await reader.readexactly(4)
        if kind == 1:
            host = ".".join(str(b) for b in await reader.readexactly(4))
        else:
            host = (await reader.readexactly((await reader.readexactly(1))[0])).decode()
        (port,) = struct.unpack("!H", await reader.readexactly(2))
        self.seen.append(f"{host}:{port}")
        up_reader, up_writer = await asyncio.open_connection(host, port)
        writer.write(b"\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00")
        await _splice(reader, writer, up_reader, up_writer)


async def _splice(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader,
    up_writer: asyncio.StreamWriter,
) -> None:
    async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except ConnectionError:
            pass
        finally:
            dst.close()

    await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@pytest_asyncio.fixture(loop_scope="session", params=["http", "socks5"])
async def customer_proxy(request: pytest.FixtureRequest) -> AsyncIterator[TinyProxy]:
    proxy = TinyProxy(kind=request.param)
    proxy.server = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
    yield proxy
    proxy.server.close()


@pytest_asyncio.fixture(loop_scope="session")
async def echo_ws() -> AsyncIterator[int]:
    async def echo(ws: Any) -> None:
        async for message in ws:
            await ws.send(f"echo:{message}")

    async with websockets.serve(echo, "127.0.0.1", 0) as server:
        yield next(iter(server.sockets)).getsockname()[1]


# ----- allowed sites load fully ----------------------------------------------------------------


async def test_an_allowed_site_loads_with_sub_resources_websockets_and_downloads(
    host: BrowserHost, site: LocalSite, echo_ws: int, make_policy: Callable[..., NetworkPolicy]
) -> None:
    session = await host.acquire(policy=make_policy())
    site.hits.clear()
    try:
        await session.goto(site.url(f"/tracked?port={site.port}"))
        await session.page.wait_for_function("document.title === 'done'")
        assert "/pixel.png" in site.hits and "/api" in site.hits  # sub-resources through the gate
        reply = await session.page.evaluate(
            """url => new Promise((resolve, reject) => {
                const ws = new WebSocket(url);
                ws.onopen = () => ws.send('hi');
                ws.onmessage = event => resolve(event.data);
                ws.onerror = () => reject(new Error('websocket failed'));
            })""",
            f"ws://127.0.0.1:{echo_ws}/",
        )
        assert reply == "echo:hi"
        async with session.page.expect_download() as info:
            await session.page.evaluate("url => { location.href = url; }", site.url("/download"))
        download = await info.value
        assert Path(await download.path()).read_text() == "report"
        sent, received = session.egress_bytes
        assert sent > 0 and received > 0
    finally:
        await session.close()


# ----- the allow-list's ports and the product's own services ----------------------------------


async def test_a_host_port_entry_opens_that_port_only(
    host: BrowserHost, site: LocalSite, tracker: LocalSite, blocked: Blocked, make_policy: Callable[..., NetworkPolicy]
) -> None:
    session = await host.acquire(policy=make_policy(allowed=frozenset({f"127.0.0.1:{site.port}"})))
    tracker.hits.clear()
    try:
        await session.goto(site.url("/"))
        await session.page.evaluate(FETCH, tracker.url("/other-port"))
        with pytest.raises(BlockedNavigation) as info:
            await session.goto(tracker.url("/"))
        assert info.value.reason == "loopback_address"
    finally:
        await session.close()
    assert tracker.hits == []
    assert (tracker.url("/other-port"), "loopback_address") in blocked.calls


async def test_own_services_are_refused_under_host_star_unless_named_exactly(
    host: BrowserHost, own_service: LocalSite, make_policy: Callable[..., NetworkPolicy]
) -> None:
    own_service.hits.clear()
    session = await host.acquire(policy=make_policy(allowed=frozenset({"127.0.0.1:*", "localhost"})))
    try:
        for name in ("127.0.0.1", "localhost"):
            with pytest.raises(BlockedNavigation) as info:
                await session.goto(own_service.url("/", host=name))
            assert info.value.reason == "own_service"
        assert own_service.hits == []
        session._guard.policy.allowed_private_hosts = frozenset({f"127.0.0.1:{own_service.port}"})  # type: ignore[union-attr]
        await session.goto(own_service.url("/"))
        assert own_service.hits == ["/"]
    finally:
        await session.close()


async def test_a_session_proxy_on_an_own_service_is_refused_at_the_gate(
    host: BrowserHost, site: LocalSite, own_service: LocalSite, make_policy: Callable[..., NetworkPolicy]
) -> None:
    own_service.hits.clear()
    proxy = {"server": f"http://127.0.0.1:{own_service.port}"}
    session = await host.acquire(policy=make_policy(), proxy=proxy)
    try:
        with pytest.raises(BlockedNavigation) as info:
            await session.goto(site.url("/"))
        assert info.value.reason == "proxy:own_service"
    finally:
        await session.close()
    assert own_service.hits == []


# ----- the customer's proxies ----------------------------------------------------------------


async def test_a_customer_proxy_with_credentials_carries_the_traffic(
    host: BrowserHost, site: LocalSite, echo_ws: int, customer_proxy: TinyProxy,
    make_policy: Callable[..., NetworkPolicy],
) -> None:  # fmt: skip
    session = await host.acquire(policy=make_policy(), proxy=customer_proxy.settings())
    site.hits.clear()
    try:
        await session.goto(site.url("/"))
        reply = await session.page.evaluate(
            """url => new Promise((resolve, reject) => {
                const ws = new WebSocket(url);
                ws.onopen = () => ws.send('via');
                ws.onmessage = event => resolve(event.data);
                ws.onerror = () => reject(new Error('websocket failed'));
            })""",
            f"ws://127.0.0.1:{echo_ws}/",
        )
    finally:
        await session.close()
    assert reply == "echo:via"
    assert customer_proxy.refused == 0
    if customer_proxy.kind == "http":
        # plain HTTP as absolute-form requests (the proxy answers them itself), WebSockets tunnelled
        assert f"GET {site.url('/')}" in customer_proxy.seen
        assert site.hits == []
        assert f"CONNECT 127.0.0.1:{echo_ws}" in customer_proxy.seen
    else:
        assert [hit for hit in site.hits if hit != "/favicon.ico"] == ["/"]  # Chromium may ask for the icon
        assert {f"127.0.0.1:{site.port}", f"127.0.0.1:{echo_ws}"} <= set(customer_proxy.seen)


# ----- policy domain rules on every request --------------------------------------------------


async def test_policy_domain_rules_block_sub_resources_with_an_audit(
    host: BrowserHost, site: LocalSite, tracker: LocalSite, blocked: Blocked,
    make_policy: Callable[..., NetworkPolicy],
) -> None:  # fmt: skip
    rules = validate_rules({"domainRules": {"mode": "blocklist", "entries": [{"pattern": "localhost"}]}})
    audits: list[tuple[str, str, str]] = []
    policy = make_policy()
    policy.domain_rule = lambda url: evaluate_domain(rules, url)
    policy.on_policy_block = lambda url, decision: audits.append((url, decision.action, decision.rule))
    tracker.hits.clear()
    session = await host.acquire(policy=policy)
    try:
        # The first layer does not know the policy: the page and its sub-resources go to the gate.
        await session.goto(site.url(f"/tracked?port={tracker.port}"))
        await session.page.wait_for_function("document.title === 'done'")
        await session.page.evaluate(
            "url => new Promise(r => { const w = new Worker(URL.createObjectURL(new Blob("
            "[`fetch('${url}').finally(() => postMessage(1))`]))); w.onmessage = r; })",
            tracker.url("/from-worker", host="localhost"),
        )
    finally:
        await session.close()
    assert tracker.hits == []
    urls = {url for url, _, _ in audits}
    assert {tracker.url(p, host="localhost") for p in ("/pixel.png", "/api", "/from-worker")} <= urls
    assert {(action, rule) for _, action, rule in audits} == {("block", "domain localhost (block)")}
    assert (tracker.url("/api", host="localhost"), "policy:domain localhost (block)") in blocked.calls


async def test_a_guardrail_domain_is_blocked_at_the_network_until_approved(
    host: BrowserHost, site: LocalSite, tracker: LocalSite, make_policy: Callable[..., NetworkPolicy]
) -> None:
    rules = validate_rules(
        {"domainRules": {"mode": "blocklist", "entries": [{"pattern": "localhost", "action": "guardrail"}]}}
    )
    policy = make_policy()
    policy.domain_rule = lambda url: evaluate_domain(rules, url)
    tracker.hits.clear()
    session = await host.acquire(policy=policy)
    try:
        await session.goto(site.url("/"))
        await session.page.evaluate(FETCH, tracker.url("/a", host="localhost"))
        policy.approved_hosts.add("localhost")
        await session.page.evaluate(FETCH, tracker.url("/b", host="localhost"))
    finally:
        await session.close()
    assert tracker.hits == ["/b"]


# ----- Chromium's own traffic ----------------------------------------------------------------


async def test_traffic_on_no_sessions_port_is_refused_and_not_counted(host: BrowserHost) -> None:
    reader, writer = await _gate_connection(host)
    writer.write(b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    writer.close()
    assert head.startswith(b"HTTP/1.1 407")
    assert all(slot.bytes_sent == 0 for slot in host.gate.sessions.values() if slot.policy is None)


async def _gate_connection(host: BrowserHost) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A client connection to the gate as Chromium's forwarder hands over one arriving on the
    browser-wide proxy port, where Chromium's own background traffic goes (a socket pair)."""
    import socket

    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    host.gate._spawn(host.gate._serve_socket(theirs, None))  # as on the browser-wide proxy port
    return await asyncio.open_connection(sock=ours)
