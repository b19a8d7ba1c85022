"""The one helper through which every session event is stored and pushed to clients.

An event is stored in the session's log (its id is the sequence number clients resume from),
then sent to the channel-layer group of the session, which the socket consumers join. Task
waiters (inline REST responses) listen on a Redis channel per task.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.db import transaction
from redis.exceptions import RedisError

from agents.types import clean_obj
from enigma_site.api import timestamp
from enigma_site.redis import get_async_redis, get_redis

from .models import SessionEvent, Task

logger = logging.getLogger(__name__)


def group_name(session_id: str) -> str:
    return f"session.{session_id}"


def task_channel(task_id: str) -> str:
    return f"enigma:task:{task_id}"


def _store(session_id: str, name: str, payload: dict[str, Any], task_id: str = "") -> dict[str, Any]:
    payload = clean_obj(payload)  # text from pages: no lone surrogate reaches the log or a socket
    kind = str(payload.get("type", name))
    event = SessionEvent.objects.create(session_id=session_id, name=name, type=kind, task_id=task_id, payload=payload)
    return {"type": "session.event", "id": event.pk, "name": name, "payload": payload}


def _broadcast(session_id: str, message: dict[str, Any]) -> None:
    try:
        async_to_sync(get_channel_layer().group_send)(group_name(session_id), message)
    except (RedisError, OSError):  # the log is the source of truth; a client catches up from it
        logger.warning("could not broadcast event %s of session %s", message["id"], session_id)


def event_emit(*, session_id: str, name: str, payload: dict[str, Any], task_id: str = "") -> int:
    """Store an event from sync code and broadcast it once stored (after the commit of the
    caller's transaction, if any); returns the event id."""
    message = _store(session_id, name, payload, task_id)
    transaction.on_commit(lambda: _broadcast(session_id, message))
    return int(message["id"])


async def aevent_emit(*, session_id: str, name: str, payload: dict[str, Any], task_id: str = "") -> int:
    """Store and broadcast an event from async code (the session runner)."""
    message = await sync_to_async(_store, thread_sensitive=False)(session_id, name, payload, task_id)
    try:
        await get_channel_layer().group_send(group_name(session_id), message)
    except (RedisError, OSError):
        logger.warning("could not broadcast event %s of session %s", message["id"], session_id)
    return int(message["id"])


def task_notify(task_id: str, state: str) -> None:
    get_redis().publish(task_channel(task_id), json.dumps({"state": state}))


def events_after(*, session_id: str, after: int, limit: int = 500) -> list[dict[str, Any]]:
    rows = SessionEvent.objects.filter(session_id=session_id, id__gt=after).order_by("id")[:limit]
    return [{"id": e.pk, "name": e.name, "data": e.payload, "createdAt": timestamp(e.created_at)} for e in rows]


_SETTLED_WAIT_POLL_S = 5.0


class _TaskWaiters:
    """One pattern subscription per event loop, shared by every waiting request, so a web
    process holds one Redis connection for its waiters however many there are."""

    def __init__(self) -> None:
        self.futures: dict[str, set[asyncio.Future[str]]] = {}
        self.listener: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()

    async def ensure_listening(self) -> None:
        if self.listener is None or self.listener.done():
            self.subscribed.clear()
            self.listener = asyncio.get_running_loop().create_task(self._listen())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.subscribed.wait(), 2)

    async def _listen(self) -> None:
        while True:
            pubsub = get_async_redis().pubsub()
            try:
                await pubsub.psubscribe(task_channel("*"))
                self.subscribed.set()
                async for message in pubsub.listen():
                    if message.get("type") != "pmessage":
                        continue
                    state = json.loads(message["data"]).get("state")
                    if state in Task.WORKING_STATES:
                        continue
                    for future in self.futures.pop(str(message["channel"]).rsplit(":", 1)[-1], set()):
                        if not future.done():
                            future.set_result(state)
            except (RedisError, OSError, ValueError):  # waiters fall back to polling the database meanwhile
                logger.warning("task notification listener failed; reconnecting")
                self.subscribed.clear()
                await asyncio.sleep(1)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()

    def add(self, task_id: str, future: asyncio.Future[str]) -> None:
        self.futures.setdefault(task_id, set()).add(future)

    def discard(self, task_id: str, future: asyncio.Future[str]) -> None:
        futures = self.futures.get(task_id)
        if futures is not None:
            futures.discard(future)
            if not futures:
                self.futures.pop(task_id, None)


_waiters: dict[int, _TaskWaiters] = {}


async def wait_task_settled(task_id: str, timeout: float) -> None:
    """Return when the task leaves the running states, or after `timeout` seconds. Holds no
    thread and no connection of its own: a notification, or the database every few seconds."""
    loop = asyncio.get_running_loop()
    waiters = _waiters.setdefault(id(loop), _TaskWaiters())
    await waiters.ensure_listening()
    future: asyncio.Future[str] = loop.create_future()
    waiters.add(task_id, future)
    settled = sync_to_async(lambda: Task.objects.filter(pk=task_id).exclude(state__in=Task.WORKING_STATES).exists())
    try:
        deadline = loop.time() + timeout
        while (remaining := deadline - loop.time()) > 0:
            if await settled():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(future), timeout=min(remaining, _SETTLED_WAIT_POLL_S))
                return
    finally:
        waiters.discard(task_id, future)
