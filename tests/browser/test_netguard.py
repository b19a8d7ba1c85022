"""The network rules hold for every request (spec decision 10): the in-browser first layer and
the egress gate behind it."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from playwright.async_api import Error as PlaywrightError

from agents.browser import BlockedNavigation, BrowserHost, NetworkPolicy

from .conftest import LOCAL_HOSTS, Blocked, LocalSite

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_sub_resources_of_an_avoided_domain_are_never_fetched(
    host: BrowserHost,
    site: LocalSite,
    tracker: LocalSite,
    blocked: Blocked,
    make_policy: Callable[..., NetworkPolicy],
) -> None:
    tracker.hits.clear()
    session = await host.acquire(policy=make_policy(avoid_domains=["localhost"]))
    try:
        await session.goto(site.url(f"/tracked?port={tracker.port}"))
        await session.page.wait_for_function("document.title === 'done'")
        await session.page.wait_for_load_state("load")
    finally:
        await session.close()
    assert tracker.hits == []
    blocked_urls = {url for url, _ in blocked.calls}
    assert f"http://localhost:{tracker.port}/pixel.png" in blocked_urls
    assert f"http://localhost:{tracker.port}/api" in blocked_urls
    assert {reason for _, reason in blocked.calls} == {"avoided_domain:localhost"}


async def test_navigation_to_an_avoided_domain_raises(
    host: BrowserHost, site: LocalSite, make_policy: Callable[..., NetworkPolicy]
) -> None:
    session = await host.acquire(policy=make_policy(avoid_domains=["https://www.localhost/"]))
    try:
        with pytest.raises(BlockedNavigation) as info:
            await session.goto(site.url("/", host="localhost"))
        assert info.value.reason == "avoided_domain:localhost"
        await session.goto(site.url("/"))  # 127.0.0.1 is another domain
    finally:
        await session.close()


async def test_private_addresses_are_blocked_unless_allowed(
    host: BrowserHost,
    site: LocalSite,
    blocked: Blocked,
    make_policy: Callable[..., NetworkPolicy],
) -> None:
    session = await host.acquire(policy=make_policy(allowed=frozenset()))
    try:
        with pytest.raises(BlockedNavigation) as info:
            await session.goto(site.url("/"))
        assert info.value.reason == "loopback_address"
        with pytest.raises(BlockedNavigation):
            await session.goto(site.url("/", host="localhost"))
        # (the gate's 403 page may fetch its favicon, refused the same way)
        pages = [reason for url, reason in blocked.calls if not url.endswith("/favicon.ico")]
        assert pages == ["loopback_address"] * 2
        # The policy is mutable: the operator's allowance applies to the next request.
        session._guard.policy.allowed_private_hosts = LOCAL_HOSTS  # type: ignore[union-attr]
        await session.goto(site.url("/"))
    finally:
        await session.close()


async def test_a_redirect_to_a_blocked_host_is_stopped(
    host: BrowserHost,
    site: LocalSite,
    tracker: LocalSite,
    blocked: Blocked,
    make_policy: Callable[..., NetworkPolicy],
) -> None:
    session = await host.acquire(policy=make_policy(avoid_domains=["localhost"]))
    target = tracker.url("/", host="localhost")
    tracker.hits.clear()
    try:
        with pytest.raises(BlockedNavigation) as info:
            await session.goto(site.url(f"/redirect?to={target}"))
        # The hop is a new request at the egress gate, judged like the first.
        assert info.value.reason == "avoided_domain:localhost"
        assert info.value.url == target
        assert (target, "avoided_domain:localhost") in blocked.calls
        await session.goto(site.url("/"))
        image_redirect = site.url(f"/redirect?to={tracker.url('/img', host='localhost')}")
        loaded = await session.page.evaluate(
            """src => new Promise(resolve => {
                const img = new Image();
                img.onload = () => resolve(true);
                img.onerror = () => resolve(false);
                img.src = src;
            })""",
            image_redirect,
        )
        assert loaded is False
    finally:
        await session.close()
    # Redirect hops never reach the network, for navigations and sub-resources alike.
    assert tracker.hits == []


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "chrome://version",
        "ftp://127.0.0.1/",
        "view-source:http://a/",
    ],
)
async def test_non_http_schemes_are_blocked(
    host: BrowserHost, url: str, make_policy: Callable[..., NetworkPolicy]
) -> None:
    session = await host.acquire(policy=make_policy())
    try:
        with pytest.raises(BlockedNavigation) as info:
            await session.goto(url)
        assert info.value.reason.startswith("scheme:")
        assert session.page.url == "about:blank"
    finally:
        await session.close()


@pytest.mark.parametrize(
    "url", ["chrome://version", "chrome://gpu", "file:///etc/passwd", "view-source:http://127.0.0.1/"]
)
async def test_the_agent_cannot_open_non_http_pages_even_bypassing_the_guard(
    host: BrowserHost, url: str, make_policy: Callable[..., NetworkPolicy]
) -> None:
    # The agent's navigate tool calls page.goto directly: Chromium's own policy refuses.
    session = await host.acquire(policy=make_policy())
    try:
        with pytest.raises(PlaywrightError) as info:
            await session.page.goto(url)
        assert "ERR_BLOCKED_BY_ADMINISTRATOR" in info.value.message
    finally:
        await session.close()


async def test_websockets_to_private_addresses_are_refused(
    host: BrowserHost,
    site: LocalSite,
    blocked: Blocked,
    make_policy: Callable[..., NetworkPolicy],
) -> None:
    session = await host.acquire(policy=make_policy(avoid_domains=["localhost"]))
    try:
        await session.goto(site.url("/"))
        code = await session.page.evaluate(
            """url => new Promise(resolve => {
                const ws = new WebSocket(url);
                ws.onclose = event => resolve(event.code);
            })""",
            f"ws://localhost:{site.port}/socket",
        )
        assert code != 1000
        # WebSockets reach the gate as CONNECT host:port.
        assert (f"localhost:{site.port}", "avoided_domain:localhost") in blocked.calls
    finally:
        await session.close()
