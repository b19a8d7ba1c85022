"""Celery tasks: thin adapters around the runtime and services."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from celery.signals import worker_ready, worker_shutting_down


@shared_task(name="sessions.host_session", acks_late=True, reject_on_worker_lost=True,
             ignore_result=True)
def host_session(session_id: str) -> None:
    """Host a session in this worker until it ends. A duplicate delivery claims nothing."""
    from .runtime import get_runtime

    get_runtime().host_session(session_id)


@shared_task(name="sessions.sweep", ignore_result=True)
def sweep() -> dict[str, int]:
    from .sweep import sessions_sweep

    return sessions_sweep()


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
