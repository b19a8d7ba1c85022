"""The worker side of a recording: the session runner hands it every screencast frame.

Frames are written to the session's spool (video/spool.py, under ENIGMA_VAR_DIR) at most
ENIGMA_RECORDING_MAX_FPS times a second. A frame that comes too soon is held, not dropped: it is
written when the interval is up unless a newer one replaced it, so the page's last state is in
the recording even when nothing paints after it. CDP sends frames only when the page paints, so
an idle recorded session costs no CPU. When the session ends the MP4 is encoded on a thread of
this worker process (one at a time, niced so that it yields to live sessions), where the spool is.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections

from sessions_app.models import BrowserSession
from video.spool import Spool

from . import services

logger = logging.getLogger(__name__)

# Screencast settings while only the recording needs frames: fewer, smaller JPEGs.
RECORDING_EVERY_NTH_FRAME = 4

ENCODER_NICE = 10  # the encoder yields the CPU to sessions (starts, pages, the event loop)


def _lower_priority() -> None:
    """Runs on the encoder thread: Linux lets one thread of a process be niced by its id."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), ENCODER_NICE)
    except OSError:
        logger.info("could not lower the recording encoder's priority", exc_info=True)


_encoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recording-encode", initializer=_lower_priority)


def _encode(session_id: str) -> None:
    try:
        services.recording_encode(session_id=session_id)
        services.spools_prune()  # e.g. the spool of a session another host took over and ended
    except Exception:  # the thread's outermost boundary: log it, the row stays "encoding"
        logger.exception("recording of session %s could not be encoded", session_id)
    finally:
        close_old_connections()


class SessionRecorder:
    def __init__(self, session_id: str, started_at: float) -> None:
        self.session_id = session_id
        self.started_at = started_at
        self.spool = Spool(services.spool_path(session_id))
        self.min_interval = 1.0 / max(0.1, float(settings.ENIGMA_RECORDING_MAX_FPS))
        self._last_write = 0.0
        self._pending: tuple[float, bytes, str, str] | None = None
        self._flush: asyncio.TimerHandle | None = None

    @classmethod
    async def open(cls, session: BrowserSession) -> SessionRecorder | None:
        """The recorder of a session, or None when it is not recorded."""
        recording = await sync_to_async(services.recording_start, thread_sensitive=False)(session=session)
        if recording is None:
            return None
        return cls(session.pk, recording.started_at.timestamp())

    @property
    def screencast(self) -> dict[str, Any]:
        """start_screencast options for when nobody watches and only the recording needs frames."""
        return {"quality": settings.ENIGMA_RECORDING_QUALITY, "every_nth_frame": RECORDING_EVERY_NTH_FRAME}

    def frame(self, jpeg: bytes, url: str, title: str) -> None:
        now = time.time()
        if now - self._last_write >= self.min_interval:
            self._write(now, jpeg, url, title)
            return
        self._pending = (now, jpeg, url, title)
        if self._flush is None:
            delay = self.min_interval - (now - self._last_write)
            self._flush = asyncio.get_running_loop().call_later(delay, self._write_pending)

    def _write_pending(self) -> None:
        self._flush = None
        if self._pending is not None:
            self._write(*self._pending)

    def _write(self, at: float, jpeg: bytes, url: str, title: str) -> None:
        self._pending = None
        self._last_write = time.time()
        try:
            self.spool.append(t_ms=int((at - self.started_at) * 1000), jpeg=jpeg, url=url, title=title)
        except OSError as exc:  # a full disk costs the recording a frame, never the session
            logger.warning("recording of session %s: frame not spooled: %s", self.session_id, exc)

    async def close(self, *, ended: bool) -> None:
        """Stop recording; when the session has ended, encode its MP4 in the background."""
        if self._flush is not None:
            self._flush.cancel()
            self._write_pending()
        self.spool.close()
        if ended:
            _encoder.submit(_encode, self.session_id)
