"""What the runner's parts share: `db()` for database calls off the event loop, the start's
step timings."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async

from ..models import BrowserSession

start_logger = logging.getLogger("sessions_app.starts")


def db(func: Callable[..., Any]) -> Callable[..., Any]:
    """Run a sync (database) call in the runtime's thread pool, so the event loop never blocks."""
    return sync_to_async(func, thread_sensitive=False)


class StartSteps:
    """How long each step of a session's start took (bench/bench_starts.py reads the log line)."""

    def __init__(self) -> None:
        self.picked_up_at = time.time()  # the queue wait: from the session's creation to here
        self.steps: list[tuple[str, float]] = []
        self._last = time.monotonic()

    def mark(self, step: str) -> None:
        now = time.monotonic()
        self.steps.append((step, (now - self._last) * 1000))
        self._last = now

    def log(self, session: BrowserSession, *, takeover: bool) -> None:
        queue_ms = (self.picked_up_at - session.created_at.timestamp()) * 1000
        start_logger.info(
            "start steps of %s%s: queue=%.1fms %s",
            session.pk,
            " (takeover)" if takeover else "",
            queue_ms,
            " ".join(f"{step}={ms:.1f}ms" for step, ms in self.steps),
        )
