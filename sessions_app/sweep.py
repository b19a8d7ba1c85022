"""Finds sessions whose worker died: orphans them, hands them to another worker, fails them
after the grace period (api.md §4.4)."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from enigma_site.redis import get_redis

from .lifecycle import session_end, session_orphan
from .metering import sessions_meter_ended
from .models import BrowserSession
from .registry import host_of
from .signals import session_swept
from .tasks import session_dispatch

logger = logging.getLogger(__name__)

SWEEP_LOCK_KEY = "enigma:lock:sweep"
DISPATCH_RETRY_S = 10.0


def sessions_sweep_locked(*, holder: str) -> dict[str, int]:
    """Run the sweep unless another process (a worker's loop, or beat's task) ran it within the
    last interval: one sweeper at a time across the installation."""
    if not get_redis().set(SWEEP_LOCK_KEY, holder, nx=True, px=int(settings.ENIGMA_SWEEP_INTERVAL_S * 1000)):
        return {}
    return sessions_sweep()


def sessions_sweep() -> dict[str, int]:
    """Orphan stale sessions, re-dispatch them, and fail those past the grace period."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.ENIGMA_HEARTBEAT_STALE_S)
    grace = timedelta(seconds=settings.ENIGMA_ORPHAN_GRACE_S)
    counts = {"orphaned": 0, "failed": 0}
    for session in BrowserSession.objects.filter(
        Q(state=BrowserSession.State.ACTIVE) | Q(state=BrowserSession.State.PENDING, worker_id__gt=""),
        heartbeat_at__lt=stale,
    ):
        if not session_orphan(session=session, now=now):
            continue
        counts["orphaned"] += 1
        session_dispatch(session_id=session.pk, exclude=(host_of(session.worker_id),))
    for session in BrowserSession.objects.filter(state=BrowserSession.State.ORPHANED, orphaned_at__lt=now - grace):
        if session_end(session_id=session.pk, state=BrowserSession.State.FAILED, reason="instance_lost"):
            counts["failed"] += 1
            if session.worker_id:  # no runner saw this end: the host it was on settles its files
                session_swept.send(sender=BrowserSession, session_id=session.pk, host=host_of(session.worker_id))
    # A start whose message was lost before any worker claimed it (a broker restart without
    # persistence, a worker killed between taking the message and claiming) is sent again.
    retry_before = now - timedelta(seconds=DISPATCH_RETRY_S)
    unclaimed = BrowserSession.objects.filter(worker_id="")
    # A session a draining host released that no host has claimed is sent again too, to a host
    # with room (there was none when it was released, or the message was lost).
    for query, fallback in (
        (
            unclaimed.filter(
                state=BrowserSession.State.PENDING, created_at__lt=retry_before, created_at__gte=now - grace
            ),
            True,
        ),
        (
            unclaimed.filter(
                state=BrowserSession.State.ORPHANED, orphaned_at__lt=retry_before, orphaned_at__gte=now - grace
            ),
            False,
        ),
    ):
        for session_id in query.values_list("pk", flat=True):
            if get_redis().set(f"enigma:redispatch:{session_id}", "1", nx=True, ex=int(DISPATCH_RETRY_S)):
                counts["redispatched"] = counts.get("redispatched", 0) + 1
                session_dispatch(session_id=session_id, fallback=fallback)
    for session in BrowserSession.objects.filter(
        state=BrowserSession.State.PENDING, worker_id="", created_at__lt=now - grace
    ):
        if session_end(session_id=session.pk, state=BrowserSession.State.FAILED, reason="instance_unavailable"):
            counts["failed"] += 1
    counts["metered"] = sessions_meter_ended()
    if counts["orphaned"] or counts["failed"]:
        logger.info("sweep: %s", counts)
    return counts
