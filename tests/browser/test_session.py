"""Sessions are isolated contexts; input lands where the viewer clicked."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from agents.browser import BrowserHost, NetworkPolicy

from .conftest import LocalSite

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_two_sessions_do_not_share_cookies_or_local_storage(
    host: BrowserHost, site: LocalSite, make_policy: Callable[..., NetworkPolicy]
) -> None:
    first = await host.acquire(policy=make_policy())
    second = await host.acquire(policy=make_policy())
    try:
        await first.goto(site.url("/set-cookie"))
        await first.goto(site.url("/storage"))
        await first.goto(site.url("/read"))
        _, title = await first.url_and_title()
        assert "ls=secret-ls" in title
        assert "sid=abc123" in title  # the cookie survived two navigations

        await second.goto(site.url("/read"))
        _, title = await second.url_and_title()
        assert title == "ls=null;c="
    finally:
        await first.close()
        await second.close()


async def test_storage_state_round_trip_restores_the_cookie(
    host: BrowserHost, site: LocalSite, make_policy: Callable[..., NetworkPolicy]
) -> None:
    first = await host.acquire(policy=make_policy())
    await first.goto(site.url("/set-cookie"))
    await first.goto(site.url("/storage"))
    state = await first.storage_state()
    await first.close()
    assert any(c["name"] == "sid" for c in state["cookies"])

    restored = await host.acquire(policy=make_policy(), storage_state=state)
    try:
        await restored.goto(site.url("/read"))
        _, title = await restored.url_and_title()
        assert "sid=abc123" in title
        assert "ls=secret-ls" in title
    finally:
        await restored.close()


async def test_click_and_double_click_hit_the_element_drawn_there(
    host: BrowserHost, site: LocalSite, make_policy: Callable[..., NetworkPolicy]
) -> None:
    session = await host.acquire(policy=make_policy())
    try:
        await session.goto(site.url("/click"))
        await session.click(10, 10)  # empty page area
        await session.click(200, 225)
        assert await session.page.evaluate("window.clicks || 0") == 1
        await session.click(200, 225, double=True)
        assert await session.page.evaluate("window.dbl || 0") == 1
        assert await session.page.evaluate("window.clicks") == 3
    finally:
        await session.close()


@pytest.mark.parametrize("human_like", [False, True])
async def test_typed_text_lands_in_the_focused_input_and_enter_submits(
    host: BrowserHost,
    site: LocalSite,
    make_policy: Callable[..., NetworkPolicy],
    human_like: bool,
) -> None:
    session = await host.acquire(policy=make_policy())
    try:
        await session.goto(site.url("/form"))
        await session.click(100, 25)
        await session.type_text("hello x", human_like=human_like)
        assert await session.page.input_value("#q") == "hello x"
        await session.key_press("Control+a")
        await session.key_press("Backspace")
        await session.type_text("ok")
        async with session.page.expect_navigation():
            await session.key_press("Enter")
        url, title = await session.url_and_title()
        assert title == "Submitted"
        assert url.endswith("/submitted?q=ok")
    finally:
        await session.close()


async def test_a_popup_becomes_the_current_page(
    host: BrowserHost, site: LocalSite, make_policy: Callable[..., NetworkPolicy]
) -> None:
    session = await host.acquire(policy=make_policy())
    try:
        await session.goto(site.url("/"))
        first_page = session.page
        async with session.context.expect_page() as popup_info:
            await first_page.evaluate(f"window.open({site.url('/click')!r})")
        popup = await popup_info.value
        assert session.page is popup
        await popup.close()
        assert session.page is first_page
    finally:
        await session.close()
