"""Celery boot steps of a browser worker.

- `Consuming` marks the time the task consumer runs: a worker advertises free capacity only while
  it is really taking tasks from the broker (after a broker restart the consumer may be down
  while the process lives on).
- `Runtime` stops the session runtime before the pool joins its threads: every `host_session`
  thread blocks until its session ends, so without this a worker whose consumer died of an
  unrecoverable error would linger until the last session expired. It also exits the process
  when the consumer has been down longer than `ENIGMA_CONSUMER_LOST_EXIT_S`, so that a
  supervisor (`make run`, systemd) starts a fresh one. It also watches for a drain request
  (`manage.py drain_worker <host id>`).
- A browser worker drains on `SIGTERM` (`install_drain_on_sigterm`): it takes no new sessions,
  lets running tasks finish for up to `ENIGMA_DRAIN_GRACE_S`, hands every session to another
  host (`WorkerRuntime.drain`), then shuts down as Celery does and exits 0. A second `SIGTERM`
  shuts down at once (the sweep then takes the sessions over as from a lost worker).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from typing import Any

from celery import bootsteps
from django.conf import settings
from redis.exceptions import RedisError

from . import registry

logger = logging.getLogger(__name__)

WATCH_INTERVAL_S = 1.0
HARD_EXIT_AFTER_S = 30.0

_drain_started = threading.Event()
_celery_sigterm: Any = None


def install_drain_on_sigterm() -> None:
    """Make SIGTERM drain this browser worker before Celery's warm shutdown (main thread only)."""
    global _celery_sigterm
    if threading.current_thread() is not threading.main_thread() or _celery_sigterm is not None:
        return
    _celery_sigterm = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, _on_sigterm)


def _on_sigterm(signum: int, frame: Any) -> None:
    if _drain_started.is_set() and callable(_celery_sigterm):
        _celery_sigterm(signum, frame)  # drained, or a second SIGTERM: Celery's warm shutdown
        return
    drain_start()


def drain_start() -> None:
    """Drain this worker in the background, then stop it (once)."""
    if _drain_started.is_set():
        return
    _drain_started.set()
    threading.Thread(target=_drain_then_exit, name="enigma-drain", daemon=True).start()


def _drain_then_exit() -> None:
    from .runtime import get_runtime

    runtime = get_runtime()
    started = time.monotonic()
    try:  # whatever happens, the worker stops
        runtime.drain(grace_s=settings.ENIGMA_DRAIN_GRACE_S)
        logger.info("worker %s drained in %.1f s", runtime.worker_id, time.monotonic() - started)
    finally:
        with contextlib.suppress(RedisError):
            registry.drain_clear(runtime.host_id)
        os.kill(os.getpid(), signal.SIGTERM)


def _runtime_started() -> bool:
    from . import runtime

    return runtime._runtime is not None


class Consuming(bootsteps.StartStopStep):
    requires = ("celery.worker.consumer.tasks:Tasks",)

    def start(self, parent: Any) -> None:
        registry.consumer_mark(consuming=True)

    def stop(self, parent: Any) -> None:
        registry.consumer_mark(consuming=False)

    def shutdown(self, parent: Any) -> None:
        registry.consumer_mark(consuming=False)


class Runtime(bootsteps.StartStopStep):
    requires = ("celery.worker.components:Pool",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._stopped = threading.Event()

    def start(self, parent: Any) -> None:
        threading.Thread(target=self._watch_consumer, name="enigma-consumer-watch", daemon=True).start()

    def stop(self, parent: Any) -> None:
        self._stopped.set()
        from .runtime import stop_runtime

        stop_runtime()

    def _watch_consumer(self) -> None:
        limit = settings.ENIGMA_CONSUMER_LOST_EXIT_S
        while not self._stopped.wait(WATCH_INTERVAL_S):
            if _runtime_started() and not _drain_started.is_set():
                try:
                    if registry.drain_requested(registry.host_id()):
                        drain_start()
                except RedisError:
                    logger.warning("could not check for a drain request", exc_info=True)
            lost_for = registry.consumer_lost_for()
            if lost_for is None or lost_for < limit:
                continue
            logger.error(
                "the task consumer has been down for %.0f s; stopping this worker so that "
                "its supervisor starts a fresh one",
                lost_for,
            )
            os.kill(os.getpid(), signal.SIGTERM)
            if not self._stopped.wait(HARD_EXIT_AFTER_S):
                logger.error("warm shutdown did not finish; exiting")
                os._exit(1)
            return
