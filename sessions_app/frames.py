"""Live frames from the worker that hosts a session to every web process that shows them.

The worker publishes each screencast frame on the session's Redis pub/sub channel
(`frame_publish`); a web process holds one subscription connection for all its viewers
(`frames_watch`), one Redis channel per watched session, and hands each viewer only the newest
frame: a slow viewer skips pictures instead of queueing them. Frames are not events: one that
nobody watches is gone, and nothing is replayed.

They used to travel on the Channels layer (a group per session). A long-lived web process
could stop draining its channel-layer inbox (issue 18's note: viewers then got no frame, or one
a second as old messages expired), and a busy one hit the inbox's 500-message capacity; a
publish per frame, read by one connection per process, has neither.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from enigma_site.redis import get_async_redis

logger = logging.getLogger(__name__)

_PREFIX = "enigma:frames:"
# Always subscribed, so the connection has a subscription (and reads) while nobody watches.
_IDLE_CHANNEL = _PREFIX + "-"
# How long a read waits before the listener looks at the viewers' sessions again (a new viewer's
# subscription starts within this), and how long it stays up without any viewer.
_POLL_S = 0.05
IDLE_STOP_S = 30.0


def frames_channel(session_id: str) -> str:
    return _PREFIX + session_id


async def frame_publish(session_id: str, frame: dict[str, Any]) -> None:
    """Send one frame (`data`: the JPEG in base64, `url`, `title`, `timestamp`, `sentAt`)."""
    await get_async_redis().publish(frames_channel(session_id), json.dumps({**frame, "sessionId": session_id}))


class FrameFeed:
    """One viewer's frames of one session: `next()` waits for the newest one."""

    def __init__(self, hub: _FrameHub, session_id: str) -> None:
        self.session_id = session_id
        self._hub = hub
        self._latest: dict[str, Any] | None = None
        self._fresh = asyncio.Event()
        self.closed = False

    def put(self, frame: dict[str, Any]) -> None:
        self._latest = frame
        self._fresh.set()

    async def next(self) -> dict[str, Any]:
        while True:
            await self._fresh.wait()
            self._fresh.clear()
            if self._latest is not None:
                frame, self._latest = self._latest, None
                return frame

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._hub.leave(self)


class _FrameHub:
    """The subscriptions of one event loop, on one connection that only the listener task uses:
    between reads it (un)subscribes to follow the viewers' sessions, so no command is sent while
    another coroutine reads, and a new connection after an outage subscribes to the whole set.
    It stops after IDLE_STOP_S without viewers and starts again with the next one."""

    def __init__(self) -> None:
        self.feeds: dict[str, set[FrameFeed]] = {}
        self.pubsub: PubSub | None = None  # the listener's connection (tests cut it)
        self._listener: asyncio.Task[None] | None = None

    def join(self, feed: FrameFeed) -> None:
        self.feeds.setdefault(feed.session_id, set()).add(feed)
        if self._listener is None or self._listener.done():
            self._listener = asyncio.get_running_loop().create_task(self._listen())

    def leave(self, feed: FrameFeed) -> None:
        feeds = self.feeds.get(feed.session_id)
        if feeds is not None:
            feeds.discard(feed)
            if not feeds:
                del self.feeds[feed.session_id]

    async def _listen(self) -> None:
        failures = 0
        idle_since: float | None = None
        loop = asyncio.get_running_loop()
        while True:
            pubsub = self.pubsub = get_async_redis().pubsub(ignore_subscribe_messages=True)
            subscribed: set[str] = set()
            try:
                await pubsub.subscribe(_IDLE_CHANNEL)
                while True:
                    want = {frames_channel(sid) for sid in self.feeds}
                    if added := want - subscribed:
                        await pubsub.subscribe(*added)
                        subscribed |= added
                    if gone := subscribed - want:
                        await pubsub.unsubscribe(*gone)
                        subscribed -= gone
                    if want:
                        idle_since = None
                    elif idle_since is None:
                        idle_since = loop.time()
                    elif loop.time() - idle_since > IDLE_STOP_S:
                        return  # join() starts a new listener
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=_POLL_S)
                    failures = 0
                    if message is not None and message.get("type") == "message":
                        self._deliver(str(message["channel"]), message["data"])
            except (RedisError, OSError, RuntimeError):
                failures += 1
                logger.warning("frame listener lost Redis; reconnecting", exc_info=failures == 1)
                await asyncio.sleep(min(2.0, 0.1 * 2**failures))
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()

    def _deliver(self, channel: str, data: str) -> None:
        feeds = self.feeds.get(channel.removeprefix(_PREFIX))
        if not feeds:
            return
        try:
            frame = json.loads(data)
        except ValueError:
            logger.warning("an unreadable frame on %s", channel)
            return
        for feed in feeds:
            feed.put(frame)


_hubs: dict[int, _FrameHub] = {}


async def frames_watch(session_id: str) -> FrameFeed:
    """Start receiving the session's frames in this process; `close()` the feed when done."""
    hub = _hubs.setdefault(id(asyncio.get_running_loop()), _FrameHub())
    feed = FrameFeed(hub, session_id)
    hub.join(feed)
    return feed
