"""Celery boot steps of a browser worker.

- `Consuming` marks the time the task consumer runs: a worker advertises free capacity only while
  it is really taking tasks from the broker (after a broker restart the consumer may be down
  while the process lives on).
- `Runtime` stops the session runtime before the pool joins its threads: every `host_session`
  thread blocks until its session ends, so without this a worker whose consumer died of an
  unrecoverable error would linger until the last session expired. It also exits the process
  when the consumer has been down longer than `ENIGMA_CONSUMER_LOST_EXIT_S`, so that a
  supervisor (`make run`, systemd) starts a fresh one.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any

from celery import bootsteps
from django.conf import settings

from . import registry

logger = logging.getLogger(__name__)

WATCH_INTERVAL_S = 1.0
HARD_EXIT_AFTER_S = 30.0


class Consuming(bootsteps.StartStopStep):
    requires = {"celery.worker.consumer.tasks:Tasks"}

    def start(self, parent: Any) -> None:
        registry.consumer_mark(consuming=True)

    def stop(self, parent: Any) -> None:
        registry.consumer_mark(consuming=False)

    def shutdown(self, parent: Any) -> None:
        registry.consumer_mark(consuming=False)


class Runtime(bootsteps.StartStopStep):
    requires = {"celery.worker.components:Pool"}

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
            lost_for = registry.consumer_lost_for()
            if lost_for is None or lost_for < limit:
                continue
            logger.error("the task consumer has been down for %.0f s; stopping this worker so that "
                         "its supervisor starts a fresh one", lost_for)
            os.kill(os.getpid(), signal.SIGTERM)
            if not self._stopped.wait(HARD_EXIT_AFTER_S):
                logger.error("warm shutdown did not finish; exiting")
                os._exit(1)
            return
