"""Live browser workers and their capacity, kept in Redis by each worker's heartbeat."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass

from django.conf import settings

from enigma_site.redis import get_redis

WORKERS_KEY = "enigma:workers"

# When this process's Celery task consumer stopped consuming (None: it is consuming, or this is
# not a worker). Set by sessions_app.worker_steps.Consuming.
_consumer_lock = threading.Lock()
_consumer_down_since: float | None = time.monotonic()


def consumer_mark(*, consuming: bool) -> None:
    global _consumer_down_since
    with _consumer_lock:
        if consuming:
            _consumer_down_since = None
        elif _consumer_down_since is None:
            _consumer_down_since = time.monotonic()


def consumer_lost_for() -> float | None:
    """Seconds since this worker's consumer stopped taking tasks, or None while it takes them."""
    with _consumer_lock:
        return None if _consumer_down_since is None else time.monotonic() - _consumer_down_since


def worker_key(worker_id: str) -> str:
    return f"enigma:worker:{worker_id}"


@dataclass(frozen=True)
class WorkerInfo:
    worker_id: str
    capacity: int
    sessions: int
    warm: int
    contexts: int = 0


def worker_heartbeat(*, worker_id: str, capacity: int, sessions: int, warm: int, contexts: int = 0) -> None:
    r = get_redis()
    ttl_ms = int(settings.ENIGMA_HEARTBEAT_STALE_S * 1000)
    pipe = r.pipeline()
    pipe.set(worker_key(worker_id),
             json.dumps({"capacity": capacity, "sessions": sessions, "warm": warm, "contexts": contexts}),
             px=ttl_ms)
    pipe.zadd(WORKERS_KEY, {worker_id: time.time()})
    pipe.execute()


def worker_unregister(worker_id: str) -> None:
    r = get_redis()
    r.delete(worker_key(worker_id))
    r.zrem(WORKERS_KEY, worker_id)


def live_workers() -> list[WorkerInfo]:
    """Workers whose heartbeat is fresh; stale entries are pruned."""
    r = get_redis()
    r.zremrangebyscore(WORKERS_KEY, "-inf", time.time() - settings.ENIGMA_HEARTBEAT_STALE_S)
    ids = r.zrange(WORKERS_KEY, 0, -1)
    if not ids:
        return []
    out = []
    for worker_id, raw in zip(ids, r.mget([worker_key(i) for i in ids]), strict=True):
        if raw:
            data = json.loads(raw)
            out.append(WorkerInfo(worker_id, int(data["capacity"]), int(data["sessions"]),
                                  int(data.get("warm", 0)), int(data.get("contexts", 0))))
    return out


def total_capacity() -> int:
    return sum(w.capacity for w in live_workers())
