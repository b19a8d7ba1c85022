"""Shared Redis clients (one pool per process; the async client per event loop)."""

from __future__ import annotations

import asyncio
import functools

import redis
import redis.asyncio as aioredis
from django.conf import settings


@functools.cache
def get_redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, decode_responses=True, socket_connect_timeout=2,
                                health_check_interval=30,
                                max_connections=settings.ENIGMA_REDIS_MAX_CONNECTIONS)


_async_clients: dict[int, aioredis.Redis] = {}


def get_async_redis() -> aioredis.Redis:
    """A client bound to the running loop (redis.asyncio connections cannot cross loops)."""
    loop = asyncio.get_running_loop()
    client = _async_clients.get(id(loop))
    if client is None:
        client = aioredis.Redis.from_url(settings.REDIS_URL, decode_responses=True, socket_connect_timeout=2,
                                         max_connections=settings.ENIGMA_REDIS_MAX_CONNECTIONS)
        _async_clients[id(loop)] = client
    return client
