"""Live frames between processes (sessions_app.frames) on a real Redis: what a viewer's feed gets
when it is slow, when others watch the same or another session, and when Redis drops the
subscription connection. The viewer, Socket.IO and WHEP tests run the same path end to end."""

from __future__ import annotations

import asyncio
import time

import pytest

from enigma_site.redis import get_async_redis
from sessions_app import frames
from sessions_app.models import new_id


async def _send(session_id: str, n: int) -> None:
    await frames.frame_publish(session_id, {"data": str(n), "url": "u", "title": "t", "sentAt": time.time()})


async def _until_received(feed: frames.FrameFeed, session_id: str, timeout: float = 5) -> dict:
    """Publish until the feed has a frame (a new subscription is live a moment after it asks)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await _send(session_id, 0)
        try:
            return await asyncio.wait_for(feed.next(), 0.1)
        except TimeoutError:
            continue
    raise AssertionError("no frame reached the feed")


@pytest.mark.asyncio
async def test_a_feed_gets_its_sessions_frames_newest_only_and_nothing_after_close() -> None:
    one, other = new_id(), new_id()
    feed = await frames.frames_watch(one)
    second = await frames.frames_watch(one)
    elsewhere = await frames.frames_watch(other)
    try:
        await _until_received(feed, one)
        await _until_received(second, one)
        for n in range(1, 6):  # nobody reads meanwhile: a slow viewer
            await _send(one, n)
        await asyncio.sleep(0.3)
        newest = await asyncio.wait_for(feed.next(), 1)
        assert newest["data"] == "5" and newest["sessionId"] == one
        with pytest.raises(TimeoutError):  # the older ones were skipped, not queued
            await asyncio.wait_for(feed.next(), 0.3)
        assert (await asyncio.wait_for(second.next(), 1))["data"] == "5"  # each viewer gets it
        with pytest.raises(TimeoutError):  # another session's viewer gets none of them
            await asyncio.wait_for(elsewhere.next(), 0.3)
        second.close()
        await _send(one, 6)
        assert (await asyncio.wait_for(feed.next(), 1))["data"] == "6"
        assert second._latest is None  # closed: nothing more is handed to it
    finally:
        for f in (feed, second, elsewhere):
            f.close()
    hub = frames._hubs[id(asyncio.get_running_loop())]
    assert one not in hub.feeds and other not in hub.feeds


@pytest.mark.asyncio
async def test_a_feed_gets_frames_again_after_redis_drops_the_subscription_connection() -> None:
    session_id = new_id()
    feed = await frames.frames_watch(session_id)
    try:
        await _until_received(feed, session_id)
        # Cut this process's subscription connection only (other processes use this Redis too).
        hub = frames._hubs[id(asyncio.get_running_loop())]
        assert hub.pubsub is not None and hub.pubsub.connection is not None
        host, port = hub.pubsub.connection._writer.get_extra_info("sockname")[:2]
        assert await get_async_redis().client_kill(f"{host}:{port}")
        frame = await _until_received(feed, session_id, timeout=10)
        assert frame["sessionId"] == session_id
    finally:
        feed.close()
