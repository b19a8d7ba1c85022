"""Shared Redis clients (one pool per process; the async client per event loop).

Timeouts are explicit (settings.REDIS_SOCKET_TIMEOUT_S): redis-py 8's 5 s default read timeout
would abort any blocking read of 5 s or more.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import redis
import redis.asyncio as aioredis
from django.conf import settings
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.retry import Retry


def _options(retry: Any) -> dict[str, Any]:
    # A Redis restart leaves every pooled connection dead: each command retries on a fresh one
    # (with a short backoff) instead of failing the session or socket that happened to use it.
    return {
        "retry": retry,
        "retry_on_error": [redis.exceptions.ConnectionError, redis.exceptions.TimeoutError],
        "decode_responses": True,
        "socket_timeout": settings.REDIS_SOCKET_TIMEOUT_S,
        "socket_connect_timeout": settings.REDIS_CONNECT_TIMEOUT_S,
        "socket_keepalive": True,
        "health_check_interval": 30,
        "max_connections": settings.ENIGMA_REDIS_MAX_CONNECTIONS,
    }


@functools.cache
def get_redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, **_options(Retry(ExponentialBackoff(cap=2, base=0.1), 5)))


_async_clients: dict[int, aioredis.Redis] = {}


def get_async_redis() -> aioredis.Redis:
    """A client bound to the running loop (redis.asyncio connections cannot cross loops)."""
    loop = asyncio.get_running_loop()
    client = _async_clients.get(id(loop))
    if client is None:
        client = aioredis.Redis.from_url(
            settings.REDIS_URL, **_options(AsyncRetry(ExponentialBackoff(cap=2, base=0.1), 5))
        )
        _async_clients[id(loop)] = client
    return client
