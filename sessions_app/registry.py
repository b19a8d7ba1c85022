"""The fleet: live browser workers, their hosts and free capacity, kept in Redis by each worker's
heartbeat, and where a new session goes.

Each worker host has an id (`ENIGMA_HOST_ID`, default the host name) and a Celery queue of its
own, `browsers.<host id>`, which its worker consumes next to the shared `browsers` queue. A
session is sent to one host's queue (`placement_choose`): a host that is not draining, with a
free slot, one with a warm browser context first when the session can use one (no saved
environment state), then the one with the most free slots. Sessions sent to a host but not yet
claimed there are counted against it (`host_reserve`) so that a burst of starts between two
heartbeats does not go to one host.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

from django.conf import settings
from django.db.models import Count

from enigma_site.redis import get_redis

WORKERS_KEY = "enigma:workers"
SHARED_QUEUE = "browsers"
# A session sent to a host and not claimed within this long no longer counts against it (the
# sweep sends a lost start again after sessions_app.sweep.DISPATCH_RETRY_S).
RESERVATION_TTL_S = 30.0

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


def host_id() -> str:
    """This machine's id in the fleet (`ENIGMA_HOST_ID`)."""
    return settings.ENIGMA_HOST_ID


def host_of(worker_id: str) -> str:
    """The host id of a worker id (`<host id>:<pid>:<random>`)."""
    return worker_id.split(":", 1)[0]


def host_queue(host: str) -> str:
    return f"{SHARED_QUEUE}.{host}"


def worker_key(worker_id: str) -> str:
    return f"enigma:worker:{worker_id}"


def _reserved_key(host: str) -> str:
    return f"enigma:reserved:{host}"


def _drain_key(host: str) -> str:
    return f"enigma:drain:{host}"


@dataclass(frozen=True)
class WorkerInfo:
    worker_id: str
    capacity: int
    sessions: int
    warm: int
    contexts: int = 0
    host: str = ""
    draining: bool = False


@dataclass(frozen=True)
class HostInfo:
    host: str
    capacity: int
    sessions: int
    warm: int
    reserved: int

    @property
    def free(self) -> int:
        return max(0, self.capacity - self.sessions - self.reserved)

    @property
    def warm_free(self) -> int:
        return max(0, self.warm - self.reserved)


def worker_heartbeat(
    *,
    worker_id: str,
    capacity: int,
    sessions: int,
    warm: int,
    contexts: int = 0,
    draining: bool = False,
    counted: Iterable[str] = (),
) -> None:
    """Write the worker's state. `counted` are sessions this worker claimed since its last beat:
    `sessions` counts them now, so their reservations go in the same transaction (each session
    is counted once, as reserved or as hosted, whenever placement reads: see `live_hosts`)."""
    r = get_redis()
    ttl_ms = int(settings.ENIGMA_HEARTBEAT_STALE_S * 1000)
    pipe = r.pipeline(transaction=True)
    pipe.set(
        worker_key(worker_id),
        json.dumps(
            {
                "capacity": capacity,
                "sessions": sessions,
                "warm": warm,
                "contexts": contexts,
                "host": host_of(worker_id),
                "draining": draining,
            }
        ),
        px=ttl_ms,
    )
    pipe.zadd(WORKERS_KEY, {worker_id: time.time()})
    claimed = list(counted)
    if claimed:
        pipe.zrem(_reserved_key(host_of(worker_id)), *claimed)
    pipe.execute()


def worker_unregister(worker_id: str) -> None:
    r = get_redis()
    r.delete(worker_key(worker_id))
    r.zrem(WORKERS_KEY, worker_id)


def live_workers() -> list[WorkerInfo]:
    """Workers whose heartbeat is fresh; stale entries are pruned."""
    return _read_fleet(with_reserved=False)[0]


def _read_fleet(*, with_reserved: bool) -> tuple[list[WorkerInfo], dict[str, int]]:
    """The live workers and, with `with_reserved`, the sessions reserved on each of their hosts,
    read in one transaction: a heartbeat that counts a claimed session and drops its reservation
    is seen whole or not at all."""
    r = get_redis()
    now = time.time()
    r.zremrangebyscore(WORKERS_KEY, "-inf", now - settings.ENIGMA_HEARTBEAT_STALE_S)
    # decode_responses=True: members and values come back as str (the stubs say bytes | str).
    ids = cast("list[str]", r.zrange(WORKERS_KEY, 0, -1))
    if not ids:
        return [], {}
    hosts = sorted({host_of(i) for i in ids}) if with_reserved else []
    pipe = r.pipeline(transaction=True)
    pipe.mget([worker_key(i) for i in ids])
    for host in hosts:
        pipe.zremrangebyscore(_reserved_key(host), "-inf", now - RESERVATION_TTL_S)
        pipe.zcard(_reserved_key(host))
    replies = pipe.execute()
    out = []
    for worker_id, raw in zip(ids, replies[0], strict=True):
        if raw:
            data = json.loads(raw)
            out.append(
                WorkerInfo(
                    worker_id,
                    int(data["capacity"]),
                    int(data["sessions"]),
                    int(data.get("warm", 0)),
                    int(data.get("contexts", 0)),
                    str(data.get("host") or host_of(worker_id)),
                    bool(data.get("draining")),
                )
            )
    return out, {host: int(count) for host, count in zip(hosts, replies[2::2], strict=True)}


def total_capacity() -> int:
    """Session slots across the fleet (a draining worker offers none)."""
    return sum(w.capacity for w in live_workers())


def _live_by_worker(worker_ids: Iterable[str]) -> dict[str, int]:
    """How many live sessions the database has on each of these workers."""
    from .models import BrowserSession  # this module is imported before the apps are ready

    rows = (
        BrowserSession.objects.filter(state__in=BrowserSession.LIVE_STATES, worker_id__in=list(worker_ids))
        .order_by()
        .values("worker_id")
        .annotate(n=Count("pk"))
    )
    return {row["worker_id"]: row["n"] for row in rows}


def live_hosts(*, exclude: Iterable[str] = ()) -> list[HostInfo]:
    """Hosts that take new sessions (not draining), with what is sent to them but not claimed.

    A worker's sessions are the fewer of its last beat's count and the live sessions the
    database has on it: a session that has ended frees its slot at once, not at the worker's
    next beat (a start right after a terminate found the host full). The fleet is read before
    the database, so a session claimed and counted in between is still seen: by the beat."""
    excluded = set(exclude)
    workers, reserved = _read_fleet(with_reserved=True)
    workers = [w for w in workers if not w.draining and w.host not in excluded]
    live = _live_by_worker(w.worker_id for w in workers)
    totals: dict[str, list[int]] = {}
    for w in workers:
        entry = totals.setdefault(w.host, [0, 0, 0])
        entry[0] += w.capacity
        entry[1] += min(w.sessions, live.get(w.worker_id, 0))
        entry[2] += w.warm
    return [
        HostInfo(host, cap, sessions, warm, reserved.get(host, 0)) for host, (cap, sessions, warm) in totals.items()
    ]


def placement_choose(*, warm_usable: bool, exclude: Iterable[str] = ()) -> str | None:
    """The host a new session goes to, or None when no host has a free slot."""
    return placement_pick(live_hosts(exclude=exclude), warm_usable=warm_usable)


def placement_pick(hosts: list[HostInfo], *, warm_usable: bool) -> str | None:
    """The host among `hosts` (as live_hosts() returned them) a new session goes to, or None."""
    hosts = [h for h in hosts if h.free > 0]
    if not hosts:
        return None
    best = max(hosts, key=lambda h: (warm_usable and h.warm_free > 0, h.free, random.random()))
    return best.host


def host_reserve(host: str, session_id: str) -> None:
    """Count the session against `host` until its worker claims it."""
    pipe = get_redis().pipeline()
    pipe.zadd(_reserved_key(host), {session_id: time.time()})
    pipe.expire(_reserved_key(host), int(RESERVATION_TTL_S) * 2)
    pipe.execute()


def host_unreserve(host: str, session_id: str) -> None:
    get_redis().zrem(_reserved_key(host), session_id)


def drain_request(host: str) -> None:
    """Ask the worker of `host` to drain (it clears the request when it exits)."""
    get_redis().set(_drain_key(host), str(time.time()))


def drain_requested(host: str) -> bool:
    return bool(get_redis().exists(_drain_key(host)))


def drain_clear(host: str) -> None:
    get_redis().delete(_drain_key(host))
