"""Files the session's pages download: kept in the team's storage (environments), listed in the
result of the task that was running (`data.files`)."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import DatabaseError
from playwright.async_api import Error as PlaywrightError

from enigma_site.errors import ApiError
from environments import services as environment_services
from environments import storage as environment_storage

from ..models import Task
from .support import db

if TYPE_CHECKING:
    from .session import SessionRunner

logger = logging.getLogger(__name__)

SAVE_WAIT_S = 30


class DownloadKeeper:
    def __init__(self, runner: SessionRunner) -> None:
        self.runner = runner
        self._saving: set[asyncio.Task[None]] = set()
        self._files: dict[str, list[dict[str, Any]]] = {}

    def watch(self, page: Any) -> None:
        page.on("download", self._on_download)

    def _on_download(self, download: Any) -> None:
        runner = self.runner
        task = runner.current_task
        if task is None and runner.cdp_relay is None:
            return  # a manual download between tasks belongs to no task's result (a CDP session's stays its file)
        keep = asyncio.get_running_loop().create_task(self._keep(download, task))
        self._saving.add(keep)
        keep.add_done_callback(self._saving.discard)

    async def _keep(self, download: Any, task: Task | None) -> None:
        runner = self.runner
        session = runner.session
        assert session is not None
        started = time.time()
        temp = environment_storage.temp_dir() / f"{runner.session_id}-{secrets.token_hex(8)}"
        try:
            await download.save_as(str(temp))
            stored = await db(environment_services.file_store_download)(
                team_id=session.team_id,
                session_id=runner.session_id,
                task_id=task.pk if task else "",
                environment_id=runner.config.environment_id,
                source_url=runner.vault.scrub(download.url),
                filename=runner.vault.scrub(download.suggested_filename),
                temp_path=str(temp),
            )
        except (PlaywrightError, ApiError, OSError, DatabaseError):  # refused (size, count, quota) or lost
            logger.warning("could not keep a download of session %s", runner.session_id, exc_info=True)
            return
        if task is None:
            return
        self._files.setdefault(task.pk, []).append(
            {
                "source": download.url,
                # Absolute, from where the client reached us (relative only for a trigger's session
                # without ENIGMA_PUBLIC_URL).
                "downloadUrl": f"{settings.ENIGMA_PUBLIC_URL or session.base_url}/files/{stored.pk}/download",
                "filename": stored.original_name,
                "timestamp": int(started * 1000),
                "fileId": stored.pk,
                "size": stored.size,
            }
        )

    async def collect(self, task: Task) -> list[dict[str, Any]]:
        """The files the browser downloaded during `task`, once their saves have finished."""
        if self._saving:
            await asyncio.wait(set(self._saving), timeout=SAVE_WAIT_S)
        return self._files.pop(task.pk, [])
