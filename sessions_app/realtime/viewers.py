"""Who watches a session's live view, across every web process.

The CDP screencast costs a worker CPU, so it runs only while someone watches. Each viewer (a
Socket.IO client that asked for frames, or a dashboard websocket) holds a lease: a member of
the Redis sorted set `enigma:viewers:<session id>` scored with its expiry time, refreshed while
it watches. A web process that dies leaves leases that expire on their own. The session runner
treats this set as the truth (see SessionRunner._apply_screencast): a "screencast" command is
only a nudge to look at it now.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid

from asgiref.sync import sync_to_async

from enigma_site.redis import get_async_redis

from ..commands import command_push

logger = logging.getLogger(__name__)

VIEWER_TTL_S = 30.0
VIEWER_REFRESH_S = 10.0


def viewers_key(session_id: str) -> str:
    return f"enigma:viewers:{session_id}"


async def viewer_count(session_id: str) -> int:
    """Return how many unexpired leases the session has."""
    redis = get_async_redis()
    key = viewers_key(session_id)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zremrangebyscore(key, "-inf", time.time())
        pipe.zcard(key)
        _, count = await pipe.execute()
    return int(count)


async def _screencast_nudge(session_id: str, on: bool) -> None:
    await sync_to_async(command_push, thread_sensitive=False)(session=session_id, kind="screencast", data={"on": on})


class ViewerLease:
    """One viewer's lease on a session's screencast: `start` when it begins to watch, `stop`
    when it leaves (idempotent); `nudge` asks the runner to (re)start frames, e.g. after a
    worker took the session over."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.viewer_id = uuid.uuid4().hex
        self._refresher: asyncio.Task[None] | None = None

    @property
    def active(self) -> bool:
        return self._refresher is not None

    async def _put(self) -> None:
        redis = get_async_redis()
        key = viewers_key(self.session_id)
        async with redis.pipeline(transaction=True) as pipe:
            pipe.zadd(key, {self.viewer_id: time.time() + VIEWER_TTL_S})
            pipe.expire(key, int(VIEWER_TTL_S) + 5)
            await pipe.execute()

    async def start(self) -> None:
        if self._refresher is not None:
            return
        await self._put()
        self._refresher = asyncio.create_task(self._refresh())
        await self.nudge()

    async def nudge(self) -> None:
        if self._refresher is not None:
            await _screencast_nudge(self.session_id, True)

    async def stop(self) -> None:
        refresher, self._refresher = self._refresher, None
        if refresher is None:
            return
        refresher.cancel()
        with contextlib.suppress(BaseException):
            await refresher
        await get_async_redis().zrem(viewers_key(self.session_id), self.viewer_id)
        if await viewer_count(self.session_id) == 0:
            await _screencast_nudge(self.session_id, False)

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(VIEWER_REFRESH_S)
            try:
                await self._put()
            except Exception:  # Redis hiccup: the next refresh comes before the lease expires
                logger.warning("could not refresh viewer lease of session %s", self.session_id)
