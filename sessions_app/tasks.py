"""Celery tasks: thin adapters around the runtime and services, and where sessions are sent."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from celery import shared_task
from celery.signals import worker_ready, worker_shutting_down

from enigma_site.gc_freeze import freeze_startup

from . import registry, signals

logger = logging.getLogger(__name__)


# Acknowledged when it starts, not when the session ends hours later: once claimed, a session is
# owned by its worker's heartbeats and the sweep's takeover, not by the broker message. (A message
# left unacknowledged for a session's life is what a broker restart used to choke on: kombu's
# restore of unacked messages fails after the connection is gone and the consumer dies.) A message
# lost before its claim is sent again by the sweep (sessions_app.sweep).
@shared_task(name="sessions.host_session", acks_late=False, ignore_result=True)
def host_session(session_id: str) -> None:
    """Host a session in this worker until it ends. A duplicate delivery claims nothing. A
    draining worker passes the session on to another host (or, with none, leaves it to the
    sweep, which sends it again once a host has room)."""
    from .runtime import get_runtime

    runtime = get_runtime()
    if runtime.draining:
        session_dispatch(session_id=session_id, exclude=(runtime.host_id,), fallback=False)
        return
    runtime.host_session(session_id)


def session_dispatch(
    *,
    session_id: str,
    host: str | None = None,
    warm_usable: bool = False,
    exclude: Iterable[str] = (),
    fallback: bool = True,
) -> str | None:
    """Send the session to `host`'s queue, or to the host `registry.placement_choose` picks.
    Without any host with a free slot it goes to the shared queue (`fallback`), where the next
    worker with a free thread takes it; returns the host, or None."""
    if host is None:
        host = registry.placement_choose(warm_usable=warm_usable, exclude=exclude)
        if host is not None:
            registry.host_reserve(host, session_id)
    if host is None and not fallback:
        return None
    queue = registry.host_queue(host) if host is not None else registry.SHARED_QUEUE
    host_session.apply_async((session_id,), queue=queue)
    return host


# The name predates the sessions app publishing this: queued messages carry it.
@shared_task(name="environments.task_finished", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def task_finished(task_id: str) -> None:
    """A task reached its end: tell the subscribers (webhooks, trigger runs) here, in an ops
    worker, not in the runner that finished it. Safe to run twice."""
    signals.task_finished.send(sender=None, task_id=task_id)


@shared_task(name="sessions.sweep", ignore_result=True, expires=30)
def sweep() -> dict[str, int]:
    """Run by beat too, so orphans are found even when no browser worker is alive."""
    from .sweep import sessions_sweep_locked

    return sessions_sweep_locked(holder="beat")


@worker_ready.connect
def _start_runtime(sender: Any = None, **kwargs: Any) -> None:
    """A browser worker also consumes its host's own queue, starts Chromium and the warm pool
    before the first session arrives, and drains on SIGTERM (sessions_app.worker_steps)."""
    queues = {q.name for q in sender.task_consumer.queues} if sender and sender.task_consumer else set()
    if registry.SHARED_QUEUE in queues:
        from .runtime import get_runtime
        from .worker_steps import install_drain_on_sigterm

        own = registry.host_queue(registry.host_id())
        if own not in queues:
            sender.add_task_queue(own)
        get_runtime()
        install_drain_on_sigterm()
        freeze_startup("browser worker")  # Playwright, the agents and Chromium's pool are up


@worker_shutting_down.connect
def _stop_runtime(**kwargs: Any) -> None:
    from .runtime import stop_runtime

    stop_runtime()
