"""The host: warm pool, screencast, and no leaked contexts or processes."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

import pytest

from agents.browser import BrowserHost, NetworkPolicy

from .conftest import WARM_POOL_SIZE, LocalSite

pytestmark = pytest.mark.asyncio(loop_scope="session")


def chromium_processes() -> set[int]:
    """Pids of Chromium processes descending from this test process (via the driver)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found: set[int] = set()
    stack = [os.getpid()]
    while stack:
        for child in children.get(stack.pop(), []):
            stack.append(child)
            try:
                with open(f"/proc/{child}/cmdline", "rb") as cmdline:
                    if b"chromium" in cmdline.read().split(b"\0", 1)[0]:
                        found.add(child)
            except OSError:
                continue
    return found


async def test_warm_acquire_takes_from_the_pool_and_refills_it(
    host: BrowserHost, make_policy: Callable[..., NetworkPolicy]
) -> None:
    await host.wait_warm()
    assert host.warm_count == WARM_POOL_SIZE
    session = await host.acquire(policy=make_policy())
    assert host.warm_count == WARM_POOL_SIZE - 1
    assert session.page.url == "about:blank"
    await host.wait_warm()
    assert host.warm_count == WARM_POOL_SIZE
    await session.close()
    assert await host.healthy()


async def test_a_deferred_refill_waits_for_the_caller_unless_the_pool_ran_dry(
    host: BrowserHost, site: LocalSite, make_policy: Callable[..., NetworkPolicy]
) -> None:
    """A session start takes a warm context with defer_refill: no context is made while its
    first page loads (it slowed that page ~250 ms on two cores); refill() makes it afterwards.
    A take that empties the pool refills at once (a burst must not wait)."""
    await host.wait_warm()
    contexts = host.open_contexts
    first = await host.acquire(policy=make_policy(), defer_refill=True)
    await first.goto(site.url("/"))
    await asyncio.sleep(0.5)
    assert host.warm_count == WARM_POOL_SIZE - 1 and host.open_contexts == contexts  # nothing made meanwhile
    host.refill()
    await host.wait_warm()
    assert host.warm_count == WARM_POOL_SIZE
    taken = [await host.acquire(policy=make_policy(), defer_refill=True) for _ in range(WARM_POOL_SIZE)]
    await host.wait_warm()  # the last take emptied the pool: refilled without refill()
    assert host.warm_count == WARM_POOL_SIZE
    for session in [first, *taken]:
        await session.close()


async def test_screencast_delivers_jpeg_frames_and_stops(
    host: BrowserHost, site: LocalSite, make_policy: Callable[..., NetworkPolicy]
) -> None:
    session = await host.acquire(policy=make_policy())
    frames: list[tuple[bytes, dict[str, Any]]] = []
    enough = asyncio.Event()

    async def on_frame(jpeg: bytes, metadata: dict[str, Any]) -> None:
        frames.append((jpeg, metadata))
        if len(frames) >= 5:
            enough.set()

    try:
        await session.goto(site.url("/animated"))
        await session.start_screencast(on_frame, quality=50, every_nth_frame=2)
        await asyncio.wait_for(enough.wait(), timeout=10)
        await session.stop_screencast()
        await asyncio.sleep(0.3)  # frames already in flight may still land
        count = len(frames)
        await asyncio.sleep(0.5)
        assert len(frames) == count
        jpeg, metadata = frames[0]
        assert jpeg.startswith(b"\xff\xd8")
        assert metadata["deviceWidth"] == 1024
        await session.stop_screencast()  # idempotent
    finally:
        await session.close()


async def test_closing_sessions_releases_contexts_and_processes(
    host: BrowserHost, site: LocalSite, make_policy: Callable[..., NetworkPolicy]
) -> None:
    await host.wait_warm()
    baseline = chromium_processes()
    assert baseline, "no chromium process found under the test process"
    for _ in range(30):
        session = await host.acquire(policy=make_policy())
        await session.goto(site.url("/"))
        await session.close()
        await session.close()  # idempotent
    await host.wait_warm()
    assert host.open_contexts == WARM_POOL_SIZE
    # Renderers exit asynchronously after their context closes (slowly under load), and Chromium
    # may hold one spare renderer for the next navigation: 30 leaked sessions would be 30 more.
    for _ in range(300):
        if len(chromium_processes()) <= len(baseline) + 1:
            break
        await asyncio.sleep(0.1)
    assert len(chromium_processes()) <= len(baseline) + 1


async def test_switching_the_screencast_of_a_closed_page_does_not_raise(
    host: BrowserHost, site: LocalSite, make_policy: Callable[..., NetworkPolicy]
) -> None:
    """The session's end can close the page while its screencast runs: the stop that follows
    or switch (the viewers' watcher, the runner's teardown) has nothing left to stream."""
    session = await host.acquire(policy=make_policy())
    try:
        await session.goto(site.url("/animated"))

        async def on_frame(jpeg: bytes, metadata: dict[str, Any]) -> None:
            pass

        await session.start_screencast(on_frame, quality=50, every_nth_frame=2)
        await session.page.close()
        await session.stop_screencast()
        # Switching it (live view to recording alone) starts it again: on no page, no error.
        await session.start_screencast(on_frame, quality=30, every_nth_frame=4)
        await session.stop_screencast()
    finally:
        await session.close()
