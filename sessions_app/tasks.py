"""Celery tasks: thin adapters around the runtime and services."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from celery.signals import worker_ready, worker_shutting_down


# Acknowledged when it starts, not when the session ends hours later: once claimed, a session is
# owned by its worker's heartbeats and the sweep's takeover, not by the broker message. (A message
# left unacknowledged for a session's life is what a broker restart used to choke on: kombu's
# restore of unacked messages fails after the connection is gone and the consumer dies.) A message
# lost before its claim is sent again by the sweep (sessions_app.sweep).
@shared_task(name="sessions.host_session", acks_late=False, ignore_result=True)
def host_session(session_id: str) -> None:
    """Host a session in this worker until it ends. A duplicate delivery claims nothing."""
    from .runtime import get_runtime

    get_runtime().host_session(session_id)


@shared_task(name="sessions.sweep", ignore_result=True, expires=30)
def sweep() -> dict[str, int]:
    """Run by beat too, so orphans are found even when no browser worker is alive."""
    from .sweep import sessions_sweep_locked

    return sessions_sweep_locked(holder="beat")


@worker_ready.connect
def _start_runtime(sender: Any = None, **kwargs: Any) -> None:
    """Start Chromium and the warm pool before the first session arrives."""
    queues = {q.name for q in sender.task_consumer.queues} if sender and sender.task_consumer else set()
    if "browsers" in queues:
        from .runtime import get_runtime

        get_runtime()


@worker_shutting_down.connect
def _stop_runtime(**kwargs: Any) -> None:
    from .runtime import stop_runtime

    stop_runtime()
