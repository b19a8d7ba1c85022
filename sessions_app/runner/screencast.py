"""The session's frames: the live view for viewers and the recording.

Viewers on any web process hold leases in Redis (sessions_app.realtime.viewers); a
"screencast" command is a nudge and the leases decide, so a late "off" from one web process
cannot stop frames that a viewer on another one watches. While nobody watches, a recorded
session keeps a slower screencast for its recording.

The recording is another app's (recordings/): it installs its recorder factory here
(`recorder_factory_set`, in its AppConfig.ready()); the sessions app imports none of it."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from django.conf import settings
from playwright.async_api import Error as PlaywrightError
from redis.exceptions import RedisError

from ..frames import frame_publish
from ..models import BrowserSession
from ..realtime.viewers import viewer_count

if TYPE_CHECKING:
    from .session import SessionRunner

logger = logging.getLogger(__name__)

SCREENCAST_CHECK_S = 2.0


class FrameRecorder(Protocol):
    """The recording of one session: it is handed every frame, and closed when the runner stops."""

    @property
    def screencast(self) -> dict[str, Any]:
        """start_screencast options for when nobody watches and only the recording needs frames."""
        ...

    def frame(self, jpeg: bytes, url: str, title: str) -> None: ...

    async def close(self, *, ended: bool) -> None: ...


# Opens the recorder of a session, or returns None when the session is not recorded.
RecorderFactory = Callable[[BrowserSession], Awaitable[FrameRecorder | None]]


async def _no_recorder(session: BrowserSession) -> FrameRecorder | None:
    return None


# No recording app installed: no session is recorded.
_recorder_factory: RecorderFactory = _no_recorder


def recorder_factory_set(factory: RecorderFactory) -> None:
    global _recorder_factory
    _recorder_factory = factory


class ScreencastFeed:
    def __init__(self, runner: SessionRunner) -> None:
        self.runner = runner
        self.recorder: FrameRecorder | None = None
        self._watch: asyncio.Task[None] | None = None
        self._live = False  # frames for viewers (else only for the recording)
        self._url = ""
        self._title = ""

    async def open_recording(self) -> None:
        """Start the session's recording (unless it is off): it needs frames while nobody watches."""
        assert self.runner.session is not None
        self.recorder = await _recorder_factory(self.runner.session)
        if self.recorder is not None:
            await self.apply(False)

    async def close_recording(self, *, ended: bool) -> None:
        if self.recorder is not None:
            await self.recorder.close(ended=ended)  # an ended session's MP4 is encoded now

    async def apply(self, on: bool) -> None:
        """Start, switch or stop the screencast after a nudge (`on`: a viewer asked for frames)."""
        browser = self.runner.browser
        assert browser is not None
        watched = on or await viewer_count(self.runner.session_id) > 0
        if self._watch is not None and watched == self._live:
            return
        if not watched and self.recorder is None:
            if self._watch is not None:
                await self._stop()
            return
        options = (
            self.recorder.screencast
            if not watched and self.recorder is not None
            else {
                "quality": settings.ENIGMA_SCREENCAST_QUALITY,
                "every_nth_frame": settings.ENIGMA_SCREENCAST_EVERY_NTH_FRAME,
            }
        )
        await browser.start_screencast(self._on_frame, **options)
        logger.info("screencast of session %s: %s", self.runner.session_id, "live" if watched else "recording")
        self._live = watched
        if self._watch is None:
            self._watch = asyncio.create_task(self._watch_viewers())

    async def _stop(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None and watch is not asyncio.current_task():
            watch.cancel()
        if self.runner.browser is not None:
            await self.runner.browser.stop_screencast()
        logger.info("screencast of session %s: off", self.runner.session_id)

    async def _watch_viewers(self) -> None:
        """While frames flow: keep the title fresh, and stop once no lease is left (a web
        process that died cannot say "off")."""
        runner = self.runner
        while not runner.done.is_set():
            await asyncio.sleep(SCREENCAST_CHECK_S)
            if runner.browser is not None:
                self._title = runner.vault.scrub((await runner.browser.url_and_title())[1])
            try:
                watched = await viewer_count(runner.session_id) > 0
            except RedisError:
                continue
            if not watched and self._live:
                try:
                    await self.apply(False)  # stops, or goes on for the recording alone
                except PlaywrightError as exc:  # the page closed under it: the session is ending
                    logger.info("screencast of session %s: not switched (%s)", runner.session_id, exc.message)
                    if self._watch is asyncio.current_task():
                        self._watch = None
                    return
                if self._watch is None:
                    return

    async def _on_frame(self, jpeg: bytes, metadata: dict[str, Any]) -> None:
        runner = self.runner
        browser = runner.browser
        url = runner.vault.scrub(browser.page.url) if browser is not None else ""
        if url != self._url:
            self._url, self._title = url, ""
            if browser is not None:
                try:
                    self._title = runner.vault.scrub(await asyncio.wait_for(browser.page.title(), 0.2))
                except (PlaywrightError, TimeoutError):
                    self._title = ""
        if self.recorder is not None:
            self.recorder.frame(jpeg, url, self._title)
        if not self._live:
            return
        await frame_publish(
            runner.session_id,
            {
                "data": base64.b64encode(jpeg).decode(),
                "url": url,
                "title": self._title,
                "timestamp": metadata.get("timestamp"),
                "sentAt": time.time(),
            },
        )
