"""Applies the session's commands (sessions_app.commands) in stream order: newTask (its
secrets, kept in memory only), pause / resume / stop / terminate, takeover and manual
interactions, guardrail answers, screencast nudges. The worker's shared reader
(WorkerRuntime._command_reader) feeds `queue`."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from agents.types import TaskStopped
from enigma_site.redis import get_async_redis

from ..commands import stream_key
from ..models import BrowserSession
from ..schema import CHROME_HEIGHT
from .support import db

if TYPE_CHECKING:
    from .session import SessionRunner

logger = logging.getLogger(__name__)

# Commands whose effect must not repeat after a takeover (newTask and screencast are idempotent).
CONTROL_COMMANDS = ("state", "interaction", "guardrail")


class CommandApplier:
    def __init__(self, runner: SessionRunner) -> None:
        self.runner = runner
        self.last_id = "0-0"  # the worker's shared stream reader reads on from here
        self.queue: asyncio.Queue[tuple[str, dict[str, str]]] = asyncio.Queue()
        self.secrets: dict[str, list[dict[str, Any]]] = {}  # of queued tasks, by task id
        self.task_entries: dict[str, str] = {}  # the newTask stream entry of each task

    async def load(self) -> None:
        """Rebuild the secrets of queued tasks from the stream before any task runs, and read
        commands on after the last one a runner of this session applied: a command sent before
        this runner was up (a terminate right after start, a pause while no worker was alive) is
        applied once, in order."""
        runner = self.runner
        assert runner.session is not None
        self.last_id = runner.session.last_command_id or "0-0"
        entries: list[tuple[str, dict[str, str]]] = await get_async_redis().xrange(  # type: ignore[assignment]
            stream_key(runner.session_id), "-", "+"
        )  # the client decodes responses
        for entry_id, fields in entries:
            if fields.get("kind") == "newTask":
                self._task_command(entry_id, json.loads(fields["data"]))

    def _task_command(self, entry_id: str, data: dict[str, Any]) -> None:
        """Keep a queued task's secrets (in memory only) and its stream entry."""
        entries = data.get("secrets") or []
        self.secrets[data["taskId"]] = entries
        self.task_entries[data["taskId"]] = entry_id
        if entries:
            self.runner.add_secrets(entries)

    async def forget_task(self, task_id: str) -> None:
        """The task has ended: its newTask entry (and the secrets in it) leaves the stream."""
        entry = self.task_entries.pop(task_id, None)
        if entry:
            await get_async_redis().xdel(stream_key(self.runner.session_id), entry)

    async def loop(self) -> None:
        """Apply commands in stream order. A command that fails is reported; the next one runs."""
        runner = self.runner
        while not runner.done.is_set():
            entry_id, fields = await self.queue.get()
            if fields.get("kind") != "screencast":  # watching is not activity
                runner.last_activity = time.monotonic()
            kind = fields.get("kind", "")
            try:
                await self._apply(entry_id, kind, json.loads(fields.get("data", "{}")))
            except Exception:  # the boundary of one command (browser, database, a bad entry)
                logger.exception("command %s of session %s failed", entry_id, runner.session_id)
                await runner.emit("message", {"type": "error", "error": "Command failed", "code": "COMMAND_FAILED"})
            if kind in CONTROL_COMMANDS and not runner.done.is_set():
                # A runner that takes the session over goes on after this one.
                await db(BrowserSession.objects.filter(pk=runner.session_id, generation=runner.generation).update)(
                    last_command_id=entry_id
                )

    async def _apply(self, entry_id: str, kind: str, data: dict[str, Any]) -> None:
        runner = self.runner
        if kind == "newTask":
            self._task_command(entry_id, data)
            runner.wake.set()
        elif kind == "state":
            await self._apply_state(data["newState"])
        elif kind == "guardrail":
            future = runner.guardrail_future
            if future is not None and not future.done():
                if data.get("newState") == "stop":
                    future.set_exception(TaskStopped())
                else:
                    future.set_result(data.get("answer", ""))
        elif kind == "interaction":
            await self._apply_interaction(data)
        elif kind == "screencast":
            await runner.screencast.apply(bool(data.get("on")))

    async def _apply_state(self, new_state: str) -> None:
        runner = self.runner
        if new_state == "terminate":
            await runner.end(BrowserSession.State.TERMINATED, "terminated")
        elif new_state == "pause":
            await runner.set_flags(paused=True)
            await runner.emit("message", {"type": "paused", "sessionId": runner.session_id})
        elif new_state == "resume":
            await runner.set_flags(paused=False)
            await runner.emit("message", {"type": "resumed", "sessionId": runner.session_id})
        elif new_state == "stop":
            runner.stop_agent()
            await runner.set_flags(paused=False)
            await runner.emit(
                "message",
                {
                    "type": "stopped",
                    "sessionId": runner.session_id,
                    "taskId": runner.current_task.pk if runner.current_task else None,
                },
            )

    async def _apply_interaction(self, action: dict[str, Any]) -> None:
        runner = self.runner
        browser = runner.browser
        assert browser is not None
        kind = action["type"]
        if kind == "takeOverControl":
            await runner.set_flags(human_control=True)
            await runner.emit("message", {"type": "takeover", "control": "human"})
            return
        if kind == "releaseControl":
            await runner.set_flags(human_control=False)
            await runner.emit("message", {"type": "takeover", "control": "agent"})
            return
        if not await runner.gate.allows_manual(action):
            return
        if kind in ("CLICK", "DOUBLE_CLICK"):
            await browser.click(action["x"], action["y"] - CHROME_HEIGHT, double=kind == "DOUBLE_CLICK")
            target = f"({action['x']:g}, {action['y']:g})"
        elif kind == "TYPE":
            await browser.type_text(action["text"], human_like=action.get("humanLike", False))
            target = f"{len(action['text'])} characters"
        else:
            await browser.key_press(action["key"])
            target = action["key"]
        await runner.emit("message", {"type": "action", "data": {"name": kind, "target": target}, "source": "human"})
