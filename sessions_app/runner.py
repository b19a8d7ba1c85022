"""The session runner: hosts one session's browser context in a worker process for its life.

It reads the session's command stream, runs tasks one at a time through the agent, applies
pause / resume / stop / terminate, takeover and manual interactions, heart-beats, meters usage,
checkpoints the browser state, and ends the session on terminate, terminateOnCompletion,
inactivity, the lifetime cap or an empty balance. Database calls go through `db()` so the event
loop never blocks on them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db.models import F
from django.utils import timezone

from agents.browser import BlockedNavigation, NetworkPolicy, SessionBrowser
from agents.loop import run_agent
from agents.secrets import SecretVault
from agents.types import AgentError, SecretEntry, TaskSpec, TaskStopped, clean_obj
from enigma_site.redis import get_async_redis
from environments import proxies as environment_proxies
from environments import selectors as environment_selectors
from environments import services as environment_services
from environments import storage as environment_storage
from policies import engine as policy_engine
from policies import selectors as policy_selectors
from policies import services as policy_services
from recordings.recorder import SessionRecorder

from . import metering, services
from . import tasks as session_tasks
from .cdp import CdpRelay, cdp_acquire
from .commands import stream_key
from .events import aevent_emit, atask_notify
from .models import BrowserSession, Task
from .realtime.viewers import viewer_count
from .schema import CHROME_HEIGHT

if TYPE_CHECKING:
    from .runtime import WorkerRuntime

logger = logging.getLogger(__name__)

# Blocked hosts reported per task (one event each); past it, one last event says so.
MAX_BLOCKED_HOSTS = 50
start_logger = logging.getLogger("sessions_app.starts")

SCREENCAST_CHECK_S = 2.0
# Commands whose effect must not repeat after a takeover (newTask and screencast are idempotent).
CONTROL_COMMANDS = ("state", "interaction", "guardrail")
COMMAND_WAIT = timedelta(seconds=10)


def db(func: Callable[..., Any]) -> Callable[..., Any]:
    return sync_to_async(func, thread_sensitive=False)


def frames_group(session_id: str) -> str:
    return f"frames.{session_id}"


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
        start_logger.info("start steps of %s%s: queue=%.1fms %s", session.pk, " (takeover)" if takeover else "",
                          queue_ms, " ".join(f"{step}={ms:.1f}ms" for step, ms in self.steps))


class _SessionGone(Exception):
    """The session ended elsewhere or another worker holds it now: stop without writing."""


class TaskCallbacks:
    """AgentCallbacks for one task: events, usage, pause/stop checkpoints, guardrails."""

    def __init__(self, runner: SessionRunner, task: Task) -> None:
        self.runner = runner
        self.task = task

    async def event(self, kind: str, payload: dict[str, Any]) -> None:
        if kind == "agent":
            body = {"type": "agent", "content": str(payload.get("content", "")), "taskId": self.task.pk}
        elif kind == "action":
            body = {"type": "action", "data": {"name": payload.get("name"), "target": payload.get("target")},
                    "taskId": self.task.pk}
        else:
            body = {"type": "response_update", "data": {"message": str(payload.get("message", ""))},
                    "taskId": self.task.pk}
        await self.runner.emit("message", body, task_id=self.task.pk)

    async def usage(self, input_tokens: int, output_tokens: int) -> None:
        await self.runner.add_usage(self.task, input_tokens, output_tokens)

    async def checkpoint(self) -> None:
        runner = self.runner
        while True:
            if runner.stop_requested:
                raise TaskStopped()
            if not (runner.paused or runner.human_control):
                return
            runner.resumed.clear()
            await runner.resumed.wait()

    async def ask_human(self, question: str) -> str:
        return await self.runner.raise_guardrail(self.task, question)


class SessionRunner:
    def __init__(self, runtime: WorkerRuntime, session_id: str, generation: int) -> None:
        self.runtime = runtime
        self.session_id = session_id
        self.generation = generation
        self.done = asyncio.Event()
        self.wake = asyncio.Event()
        self.resumed = asyncio.Event()
        self.browser: SessionBrowser | None = None
        self.policy: NetworkPolicy | None = None
        self.session: BrowserSession | None = None
        self.paused = False
        self.human_control = False
        self.stop_requested = False
        self.handing_off = False  # the worker drains: move the session to another host between tasks
        self.start_steps = StartSteps()  # the runtime marks the pick-up and claim before run()
        self.agent_task: asyncio.Task[Any] | None = None
        self.current_task: Task | None = None
        self.guardrail_future: asyncio.Future[str] | None = None
        self.waiting_human = False
        self.secrets: dict[str, list[dict[str, Any]]] = {}
        # Every secret this runner was given, to scrub what it stores and sends (URLs, titles,
        # storage checkpoints, events, results): a page may show a value after its task ended.
        self._secret_entries: list[SecretEntry] = []
        self.vault = SecretVault(())
        self.task_entries: dict[str, str] = {}
        self.last_activity = time.monotonic()
        self.last_command_id = "0-0"  # the worker's shared stream reader reads on from here
        self.commands: asyncio.Queue[tuple[str, dict[str, str]]] = asyncio.Queue()
        self.reading = False
        self.blocked_hosts: set[str] = set()
        self._checkpoint_pending = False
        self._screencast_watch: asyncio.Task[None] | None = None
        self._screencast_live = False  # frames for viewers (else only for the recording)
        self.recorder: SessionRecorder | None = None
        self._frame_url = ""
        self._frame_title = ""
        self._downloads: set[asyncio.Task[None]] = set()
        self.policy_rules: dict[str, Any] | None = None
        self.cdp_relay: CdpRelay | None = None  # a CDP session's clients (sessions_app.cdp)
        self._egress_base = (0, 0)
        self._task_files: dict[str, list[dict[str, Any]]] = {}

    # ----- lifecycle -----------------------------------------------------------------------

    async def run(self) -> None:
        loops: list[asyncio.Task[Any]] = []
        try:
            self.start_steps.mark("loop")
            session = await db(BrowserSession.objects.select_related("team").get)(pk=self.session_id)
            self.session = session
            self._egress_base = (session.egress_bytes_sent, session.egress_bytes_received)
            self.start_steps.mark("load")
            takeover = session.started_at is not None
            self.paused, self.human_control = session.paused, session.human_control
            self.policy = NetworkPolicy(
                avoid_domains=list(session.config.get("avoidDomains", [])),
                allowed_private_hosts=settings.ENIGMA_ALLOWED_PRIVATE_HOSTS,
                on_blocked=self._on_blocked,
            )
            storage_state = session.storage_state if takeover else None
            if storage_state is None and session.config.get("environmentId"):
                storage_state = await db(environment_selectors.environment_storage_state)(
                    environment_id=session.config["environmentId"])
            proxy = None
            if session.config.get("proxy"):
                proxy = await environment_proxies.aproxy_load(self.session_id)
                if proxy is None:
                    raise RuntimeError("the session's proxy settings are gone")
            # A CDP session gets its own Chromium, which its CDP clients drive too (issue 16).
            acquire = cdp_acquire(self) if session.config.get("cdp") else self.runtime.host.acquire
            self.browser = await acquire(policy=self.policy, storage_state=storage_state, proxy=proxy)
            self.browser.page.on("framenavigated", self._on_navigated)
            self.browser.context.on("page", self._watch_downloads)
            self._watch_downloads(self.browser.page)
            if session.config.get("policyId"):
                self.policy_rules = await db(policy_selectors.policy_rules)(
                    policy_id=session.config["policyId"])
                if self.policy_rules and (self.policy_rules.get("defaultAction") == "block" or any(
                        r.get("category") == "navigation" for r in self.policy_rules.get("actionRules", []))):
                    # Navigation URL rules need the request's path (the gate sees only host:port
                    # of HTTPS); an interception costs every request of the context, so only then.
                    await self.browser.context.route("**/*", self._policy_route)
                self.runtime.bind_policy_rules(self)  # the egress gate applies the domain rules
            self.start_steps.mark("context")
            await self._load_commands()
            self.start_steps.mark("commands")
            url = session.current_url if takeover else (
                "" if session.config.get("initialPrompt") else session.config.get("startingUrl") or "")
            page: dict[str, str] = {}
            if url:
                with contextlib.suppress(Exception):
                    await self.browser.goto(url)
                # Written with the activation, so the session is active with its currentUrl at
                # once (the storage checkpoint follows the navigation, off this path).
                with contextlib.suppress(Exception):
                    current_url, title = await self.browser.url_and_title()
                    page = {"current_url": self.vault.scrub(current_url)[:4000],
                            "current_title": self.vault.scrub(title)[:1000]}
                self.start_steps.mark("navigation")
            now = timezone.now()
            activated = await db(BrowserSession.objects.filter(
                pk=self.session_id, generation=self.generation, state__in=BrowserSession.LIVE_STATES,
            ).update)(state=BrowserSession.State.ACTIVE, started_at=session.started_at or now,
                      orphaned_at=None, heartbeat_at=now, **page)
            if activated != 1:
                raise _SessionGone()
            self.start_steps.mark("state_write")
            if takeover:
                await self.emit("instance:reconnected", {"type": "instance:reconnected",
                                                         "message": "Instance connection restored"})
            await self.emit("message", {"type": "session_active", "sessionId": self.session_id})
            self.start_steps.mark("active_event")
            self.start_steps.log(session, takeover=takeover)
            self.recorder = await SessionRecorder.open(session)
            if self.recorder is not None:
                await self._apply_screencast(False)  # the recording needs frames while nobody watches
            loops = [asyncio.create_task(coro) for coro in (
                self._command_loop(), self._task_loop(), self._timer_loop())]
            self.reading = True
            await self.runtime.commands_watch(self)
            await self._supervise_loops(loops)
        except _SessionGone:
            logger.info("session %s is no longer ours", self.session_id)
        except asyncio.CancelledError:
            logger.info("runner of session %s cancelled (worker shutting down)", self.session_id)
            raise
        except Exception:
            logger.exception("session %s runner crashed", self.session_id)
            with contextlib.suppress(Exception):
                await self.end(BrowserSession.State.FAILED, "error")
        finally:
            for loop_task in loops:
                loop_task.cancel()
            for loop_task in loops:
                with contextlib.suppress(BaseException):
                    await loop_task
            if self.agent_task and not self.agent_task.done():
                self.agent_task.cancel()
            if self.cdp_relay is not None:
                await self.cdp_relay.close()
            if self.browser is not None:
                with contextlib.suppress(Exception):
                    await self.browser.close()
            ended = await db(lambda: not BrowserSession.objects.filter(
                pk=self.session_id, state__in=BrowserSession.LIVE_STATES).exists())()
            if self.recorder is not None:
                await self.recorder.close(ended=ended)  # an ended session's MP4 is encoded now
            if ended:
                await get_async_redis().delete(stream_key(self.session_id))
                await environment_proxies.aproxy_forget(self.session_id)

    async def _supervise_loops(self, loops: list[asyncio.Task[Any]]) -> None:
        """Wait until the session is done; a loop that died of an exception fails the session
        (in run) instead of leaving it alive with nothing running its tasks or commands."""
        done = asyncio.create_task(self.done.wait())
        try:
            while not self.done.is_set():
                finished, _ = await asyncio.wait({done, *loops}, return_when=asyncio.FIRST_COMPLETED)
                for loop_task in finished - {done}:
                    loops.remove(loop_task)
                    if not loop_task.cancelled() and loop_task.exception() is not None:
                        raise loop_task.exception()  # type: ignore[misc]
        finally:
            done.cancel()

    async def end(self, state: str, reason: str) -> None:
        """End the session (once), meter the last seconds, and stop the runner."""
        if self.agent_task and not self.agent_task.done():
            self.stop_requested = True
            self.agent_task.cancel()
        if self.session is not None and self.session.config.get("environmentId"):
            # session_end saves the last checkpoint into the environment: make it the latest.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.checkpoint_browser(), 5)
        await db(BrowserSession.objects.filter(pk=self.session_id, generation=self.generation).update)(
            **self._egress_fields())
        ended = await db(services.session_end)(session_id=self.session_id, state=state,
                                               reason=reason, generation=self.generation)
        if ended:
            with contextlib.suppress(Exception):
                await db(metering.session_meter)(session_id=self.session_id)
        self.done.set()

    # ----- events ---------------------------------------------------------------------------

    async def emit(self, name: str, payload: dict[str, Any], *, task_id: str = "") -> None:
        await aevent_emit(session_id=self.session_id, name=name, payload=self.vault.scrub_obj(payload),
                          task_id=task_id)

    def _on_blocked(self, url: str, reason: str) -> None:
        host = (url.split("/")[2] if "://" in url else url)[:200]
        if host in self.blocked_hosts or len(self.blocked_hosts) > MAX_BLOCKED_HOSTS:
            return
        self.blocked_hosts.add(host)
        task_id = self.current_task.pk if self.current_task else ""
        if len(self.blocked_hosts) > MAX_BLOCKED_HOSTS:  # a hostile page cannot flood the events
            data: dict[str, Any] = {"message": f"More than {MAX_BLOCKED_HOSTS} hosts blocked; no more are reported"}
        else:
            url = url if len(url) <= 200 else url[:197] + "..."
            data = {"message": f"Blocked request to {host}: {reason}", "blocked": {"url": url, "reason": reason}}
        asyncio.get_running_loop().create_task(self.emit(
            "message", {"type": "response_update", "data": data, "taskId": task_id}, task_id=task_id))

    def _on_navigated(self, frame: Any) -> None:
        if self.browser is None or frame != self.browser.page.main_frame or self._checkpoint_pending:
            return
        self._checkpoint_pending = True
        asyncio.get_running_loop().create_task(self._checkpoint_soon())

    async def _checkpoint_soon(self) -> None:
        await asyncio.sleep(0.5)
        self._checkpoint_pending = False
        await self.checkpoint_browser()

    async def checkpoint_browser(self) -> None:
        """Save storage state, URL and title so another worker can restore the session."""
        if self.browser is None or self.done.is_set():
            return
        try:
            state = await self.browser.storage_state()
            url, title = await self.browser.url_and_title()
        except Exception:
            return
        # Page text is cleaned and scrubbed like everything else we store (spec README §9).
        await db(BrowserSession.objects.filter(
            pk=self.session_id, generation=self.generation, state__in=BrowserSession.LIVE_STATES).update
        )(storage_state=self.vault.scrub_storage_state(clean_obj(state)), current_url=self.vault.scrub(url)[:4000],
          current_title=self.vault.scrub(title)[:1000], **self._egress_fields())

    def _egress_fields(self) -> dict[str, int]:
        """The session's egress byte counts: what earlier hosts counted plus this browser's."""
        sent, received = self.browser.egress_bytes if self.browser is not None else (0, 0)
        return {"egress_bytes_sent": self._egress_base[0] + sent,
                "egress_bytes_received": self._egress_base[1] + received}

    # ----- commands -------------------------------------------------------------------------

    async def _load_commands(self) -> None:
        """Rebuild the secrets of queued tasks from the stream before any task runs, and read
        commands on after the last one a runner of this session applied: a command sent before
        this runner was up (a terminate right after start, a pause while no worker was alive) is
        applied once, in order."""
        assert self.session is not None
        self.last_command_id = self.session.last_command_id or "0-0"
        entries = await get_async_redis().xrange(stream_key(self.session_id), "-", "+")
        for entry_id, fields in entries:
            if fields.get("kind") == "newTask":
                self._task_command(entry_id, json.loads(fields["data"]))

    def _task_command(self, entry_id: str, data: dict[str, Any]) -> None:
        """Keep a queued task's secrets (in memory only) and its stream entry."""
        entries = data.get("secrets") or []
        self.secrets[data["taskId"]] = entries
        self.task_entries[data["taskId"]] = entry_id
        if entries:
            self._secret_entries += [SecretEntry(match=e["match"], fields=e["fields"]) for e in entries]
            self.vault = SecretVault(self._secret_entries)

    async def _command_loop(self) -> None:
        """Apply commands in stream order; the worker's shared reader feeds `self.commands`."""
        while not self.done.is_set():
            entry_id, fields = await self.commands.get()
            if fields.get("kind") != "screencast":  # watching is not activity
                self.last_activity = time.monotonic()
            kind = fields.get("kind", "")
            try:
                await self._apply(entry_id, kind, json.loads(fields.get("data", "{}")))
            except Exception:
                logger.exception("command %s of session %s failed", entry_id, self.session_id)
                await self.emit("message", {"type": "error", "error": "Command failed",
                                            "code": "COMMAND_FAILED"})
            if kind in CONTROL_COMMANDS and not self.done.is_set():
                # A runner that takes the session over goes on after this one.
                await db(BrowserSession.objects.filter(pk=self.session_id, generation=self.generation).update)(
                    last_command_id=entry_id)

    async def _apply(self, entry_id: str, kind: str, data: dict[str, Any]) -> None:
        if kind == "newTask":
            self._task_command(entry_id, data)
            self.wake.set()
        elif kind == "state":
            await self._apply_state(data["newState"])
        elif kind == "guardrail":
            future = self.guardrail_future
            if future is not None and not future.done():
                if data.get("newState") == "stop":
                    future.set_exception(TaskStopped())
                else:
                    future.set_result(data.get("answer", ""))
        elif kind == "interaction":
            await self._apply_interaction(data)
        elif kind == "screencast":
            await self._apply_screencast(bool(data.get("on")))

    async def _set_flags(self, **flags: bool) -> None:
        for name, value in flags.items():
            setattr(self, name, value)
        await db(BrowserSession.objects.filter(pk=self.session_id, generation=self.generation).update)(**flags)
        if not (self.paused or self.human_control):
            self.resumed.set()

    async def _apply_state(self, new_state: str) -> None:
        if new_state == "terminate":
            await self.end(BrowserSession.State.TERMINATED, "terminated")
        elif new_state == "pause":
            await self._set_flags(paused=True)
            await self.emit("message", {"type": "paused", "sessionId": self.session_id})
        elif new_state == "resume":
            await self._set_flags(paused=False)
            await self.emit("message", {"type": "resumed", "sessionId": self.session_id})
        elif new_state == "stop":
            if self.agent_task and not self.agent_task.done():
                self.stop_requested = True
                self.agent_task.cancel()
            await self._set_flags(paused=False)
            await self.emit("message", {"type": "stopped", "sessionId": self.session_id,
                                        "taskId": self.current_task.pk if self.current_task else None})

    async def _apply_interaction(self, action: dict[str, Any]) -> None:
        assert self.browser is not None
        kind = action["type"]
        if kind == "takeOverControl":
            await self._set_flags(human_control=True)
            await self.emit("message", {"type": "takeover", "control": "human"})
            return
        if kind == "releaseControl":
            await self._set_flags(human_control=False)
            await self.emit("message", {"type": "takeover", "control": "agent"})
            return
        if not await self._policy_allows_manual(action):
            return
        if kind in ("CLICK", "DOUBLE_CLICK"):
            await self.browser.click(action["x"], action["y"] - CHROME_HEIGHT, double=kind == "DOUBLE_CLICK")
            target = f"({action['x']:g}, {action['y']:g})"
        elif kind == "TYPE":
            await self.browser.type_text(action["text"], human_like=action.get("humanLike", False))
            target = f"{len(action['text'])} characters"
        else:
            await self.browser.key_press(action["key"])
            target = action["key"]
        await self.emit("message", {"type": "action", "data": {"name": kind, "target": target},
                                    "source": "human"})

    async def _apply_screencast(self, on: bool) -> None:
        """Start, switch or stop the screencast. Viewers on any web process hold leases in Redis
        (sessions_app.realtime.viewers); the command is a nudge and the leases decide, so a late
        "off" from one web process cannot stop frames that a viewer on another one watches.
        While nobody watches, a recorded session keeps a slower screencast for its recording."""
        assert self.browser is not None
        watched = on or await viewer_count(self.session_id) > 0
        if self._screencast_watch is not None and watched == self._screencast_live:
            return
        if not watched and self.recorder is None:
            if self._screencast_watch is not None:
                await self._stop_screencast()
            return
        options = self.recorder.screencast if not watched and self.recorder is not None else {
            "quality": settings.ENIGMA_SCREENCAST_QUALITY,
            "every_nth_frame": settings.ENIGMA_SCREENCAST_EVERY_NTH_FRAME}
        await self.browser.start_screencast(self._on_frame, **options)
        self._screencast_live = watched
        if self._screencast_watch is None:
            self._screencast_watch = asyncio.create_task(self._watch_viewers())

    async def _stop_screencast(self) -> None:
        watch, self._screencast_watch = self._screencast_watch, None
        if watch is not None and watch is not asyncio.current_task():
            watch.cancel()
        if self.browser is not None:
            await self.browser.stop_screencast()

    async def _watch_viewers(self) -> None:
        """While frames flow: keep the title fresh, and stop once no lease is left (a web
        process that died cannot say "off")."""
        while not self.done.is_set():
            await asyncio.sleep(SCREENCAST_CHECK_S)
            with contextlib.suppress(Exception):
                self._frame_title = self.vault.scrub((await self.browser.url_and_title())[1]) if self.browser else ""
            try:
                watched = await viewer_count(self.session_id) > 0
            except Exception:
                continue
            if not watched and self._screencast_live:
                await self._apply_screencast(False)  # stops, or goes on for the recording alone
                if self._screencast_watch is None:
                    return

    async def _on_frame(self, jpeg: bytes, metadata: dict[str, Any]) -> None:
        url = self.vault.scrub(self.browser.page.url) if self.browser is not None else ""
        if url != self._frame_url:
            self._frame_url, self._frame_title = url, ""
            if self.browser is not None:
                with contextlib.suppress(Exception):
                    self._frame_title = self.vault.scrub(await asyncio.wait_for(self.browser.page.title(), 0.2))
        if self.recorder is not None:
            self.recorder.frame(jpeg, url, self._frame_title)
        if not self._screencast_live:
            return
        await get_channel_layer().group_send(frames_group(self.session_id), {
            "type": "session.frame", "sessionId": self.session_id,
            "data": base64.b64encode(jpeg).decode(), "url": url, "title": self._frame_title,
            "timestamp": metadata.get("timestamp"), "sentAt": time.time(),
        })

    # ----- tasks ----------------------------------------------------------------------------

    async def _task_loop(self) -> None:
        """Run the queued tasks one at a time. A task that crashes the runner's own code fails
        with INTERNAL_ERROR and the next one runs: no page can wedge the session."""
        while not self.done.is_set():
            if self.handing_off:  # checked on the loop right before a task is taken: none starts here
                await self.runtime.session_hand_off(self)
                return
            task = await db(lambda: Task.objects.filter(
                session_id=self.session_id, state=Task.State.QUEUED).order_by("seq").first())()
            if task is None:
                # A newTask command sets `wake`; the timeout is only a safety net.
                self.wake.clear()
                if not self.handing_off:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.wake.wait(), timeout=5.0)
                continue
            if task.pk not in self.task_entries and timezone.now() - task.created_at < COMMAND_WAIT:
                # The row is written before its newTask command: wait for the command and the
                # secrets it carries (a command lost with Redis does not hold the task forever).
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), timeout=0.5)
                continue
            try:
                await self._run_task(task)
            except Exception:  # the boundary of one task: record the failure, go on
                logger.exception("task %s of session %s crashed", task.pk, self.session_id)
                await self._fail_crashed(task)
            self.last_activity = time.monotonic()
            if task.config.get("terminateOnCompletion") and not self.done.is_set():
                await self.end(BrowserSession.State.COMPLETED, "terminateOnCompletion")

    async def _run_task(self, task: Task) -> None:
        assert self.browser is not None and self.policy is not None and self.session is not None
        claimed = await db(Task.objects.filter(pk=task.pk, state=Task.State.QUEUED).update)(
            state=Task.State.RUNNING, started_at=timezone.now())
        if claimed != 1:
            return
        await db(task.refresh_from_db)()
        self.current_task, self.stop_requested, self.blocked_hosts = task, False, set()
        config = task.config
        self.policy.avoid_domains = sorted(set(self.session.config.get("avoidDomains", []))
                                           | set(config.get("avoidDomains", [])))
        if self.session.config.get("policyId"):  # edits to the policy apply from the next task
            self.policy_rules = await db(policy_selectors.policy_rules)(
                policy_id=self.session.config["policyId"]) or self.policy_rules
            self.runtime.bind_policy_rules(self)  # changed rules cut the gate's open connections
        await self.emit("message", {"type": "task_started", "taskId": task.pk, "data": {"taskId": task.pk}},
                        task_id=task.pk)
        spec = TaskSpec(
            prompt=task.prompt,
            max_input_tokens=int(config.get("maxInputTokens", 100_000)),
            max_output_tokens=int(config.get("maxOutputTokens", 100_000)),
            output_type=config.get("outputType", "text"),
            output_schema=config.get("outputSchema"),
            secrets=tuple(SecretEntry(match=s["match"], fields=s["fields"])
                          for s in self.secrets.pop(task.pk, [])),
            files=tuple(await db(environment_selectors.file_paths)(
                team=self.session.team_id, file_ids=list(config.get("files") or []))),
            role=await db(policy_selectors.policy_role)(policy_id=self.session.config["policyId"])
            if self.session.config.get("policyId") else "",
        )
        outcome: dict[str, Any]
        try:
            result = await self._supervise(task, spec, config)
            extra = result.extra or {}
            outcome = {"state": Task.State.COMPLETED, "result_message": result.message,
                       "result_data": {k: extra[k] for k in ("files", "network") if extra.get(k)}}
        except TaskStopped:
            outcome = {"state": Task.State.STOPPED, "error": "Task was stopped", "code": "TASK_STOPPED"}
        except TimeoutError:
            ms = int(config.get("maxDuration", 300_000))
            outcome = {"state": Task.State.FAILED, "code": "TASK_TIMEOUT",
                       "error": f"Task exceeded maximum duration of {ms}ms"}
        except AgentError as exc:
            outcome = {"state": Task.State.FAILED, "code": exc.code, "error": exc.message,
                       "error_details": exc.details}
        except BlockedNavigation as exc:
            outcome = {"state": Task.State.FAILED, "code": "NAVIGATION_BLOCKED",
                       "error": f"Navigation to {exc.url} was blocked: {exc.reason}",
                       "error_details": {"url": exc.url, "reason": exc.reason}}
        except asyncio.CancelledError:
            if not self.stop_requested:
                raise
            outcome = {"state": Task.State.STOPPED, "error": "Task was stopped", "code": "TASK_STOPPED"}
        except Exception as exc:
            logger.exception("task %s crashed", task.pk)
            code = "PAGE_CRASH" if "crash" in str(exc).lower() or "closed" in str(exc).lower() else "INTERNAL_ERROR"
            outcome = {"state": Task.State.FAILED, "code": code,
                       "error": "Browser page crashed during execution" if code == "PAGE_CRASH"
                       else "The task failed because of an internal error"}
        finally:
            self.current_task = None
            self.agent_task = None
        files = await self._collect_downloads(task)
        if files and outcome["state"] == Task.State.COMPLETED:
            outcome["result_data"]["files"] = files
        await self._finish_task(task, outcome)

    # ----- automation policy ----------------------------------------------------------------

    async def _audit(self, *, source: str, name: str, target: str, url: str, decision: policy_engine.Decision,
                     response: str = "") -> None:
        assert self.session is not None
        task_id = self.current_task.pk if self.current_task else ""
        await db(policy_services.policy_audit_record)(
            team_id=self.session.team_id, session_id=self.session_id, task_id=task_id,
            policy_id=self.session.config.get("policyId") or "", source=source, action=name,
            category=",".join(policy_engine.categories_for(name, {})) or "", target=self.vault.scrub(target),
            url=self.vault.scrub(url), rule=decision.rule, decision=decision.action,
            response=self.vault.scrub(response))

    def _policy_gate(self, task: Task) -> Callable[[dict[str, Any]], Any]:
        """Checks every agent action: block refuses it, guardrail pauses the task for a human."""

        async def gate(action: dict[str, Any]) -> str | None:
            assert self.policy_rules is not None
            name, args = action["name"], action["args"]
            target_url = str(args.get("url", "")) if name == "navigate" else ""
            target = action["target"]
            if name == "type_text" and args.get("text"):
                target = f"{target} {args['text']}"
            decision = policy_engine.evaluate_action(
                self.policy_rules, name=name, args=args, url=action["url"],
                target=policy_engine.action_target(name, args, action.get("element")), target_url=target_url,
                page_text=action["pageText"])
            answer = ""
            if decision.action == "guardrail":
                answer = await TaskCallbacks(self, task).ask_human(
                    f"The automation policy asks for approval before {name} {action['target']} "
                    f"({decision.rule}). Reply yes to proceed, or say what to do instead.")
                if target_url and policy_engine.APPROVAL_RE.match(answer):
                    self.runtime.approve_host(self.policy, target_url)
            await self._audit(source="agent", name=name, target=target, url=target_url or action["url"],
                              decision=decision, response=answer)
            if decision.action == "block":
                return (f"Blocked by the automation policy ({decision.rule}). Do not retry this action; "
                        "find another way or report that it is not allowed.")
            if decision.action == "guardrail" and not policy_engine.APPROVAL_RE.match(answer):
                return f"The human did not approve this action ({decision.rule}). They said: {answer}"
            return None

        return gate

    async def _policy_route(self, route: Any) -> None:
        """Network layer: navigations (from links, scripts, redirects) to blocked targets fail."""
        request = route.request
        rules = self.policy_rules
        if rules is not None and request.resource_type == "document" and request.is_navigation_request():
            decision = policy_engine.evaluate(rules, category="navigation", url=request.url, target_url=request.url)
            if decision.action == "block":
                await self._audit(source="network", name="navigate", target=request.url, url=request.url,
                                  decision=decision)
                with contextlib.suppress(Exception):
                    await route.abort("blockedbyclient")
                return
        with contextlib.suppress(Exception):
            await route.fallback()

    async def _policy_allows_manual(self, action: dict[str, Any]) -> bool:
        """Manual actions pass the same rules; one needing approval is refused (the human acts)."""
        if self.policy_rules is None or self.browser is None:
            return True
        kind = action["type"]
        match_text = target = ""
        if kind in ("CLICK", "DOUBLE_CLICK"):
            with contextlib.suppress(Exception):
                target = str(await self.browser.page.evaluate(
                    "([x, y]) => { const el = document.elementFromPoint(x, y); return el ? "
                    "(el.innerText || el.value || el.getAttribute('aria-label') || el.tagName).slice(0, 200) : ''; }",
                    [action["x"], action["y"] - CHROME_HEIGHT]))
            match_text = target
        elif kind == "TYPE":
            match_text, target = action["text"], f"{len(action['text'])} characters"
        else:
            match_text = target = action.get("key", "")
        url = self.browser.page.url
        decision = policy_engine.evaluate_action(self.policy_rules, name=kind, args=action, url=url,
                                                 target=match_text)
        await self._audit(source="human", name=kind, target=target, url=url, decision=decision)
        if decision.action == "allow":
            return True
        await self.emit("message", {"type": "error", "code": "POLICY_BLOCKED", "source": "human",
                                    "error": f"The automation policy does not allow this action ({decision.rule})"})
        return False

    # ----- downloads ------------------------------------------------------------------------

    def _watch_downloads(self, page: Any) -> None:
        page.on("download", self._on_download)

    def _on_download(self, download: Any) -> None:
        task = self.current_task
        if task is None and self.cdp_relay is None:
            return  # a manual download between tasks belongs to no task's result (a CDP session's stays its file)
        keep = asyncio.get_running_loop().create_task(self._keep_download(download, task))
        self._downloads.add(keep)
        keep.add_done_callback(self._downloads.discard)

    async def _keep_download(self, download: Any, task: Task | None) -> None:
        assert self.session is not None
        started = time.time()
        temp = environment_storage.temp_dir() / f"{self.session_id}-{secrets.token_hex(8)}"
        try:
            await download.save_as(str(temp))
            stored = await db(environment_services.file_store_download)(
                team_id=self.session.team_id, session_id=self.session_id, task_id=task.pk if task else "",
                environment_id=self.session.config.get("environmentId"), source_url=self.vault.scrub(download.url),
                filename=self.vault.scrub(download.suggested_filename), temp_path=str(temp))
        except Exception:
            logger.warning("could not keep a download of session %s", self.session_id, exc_info=True)
            return
        if task is None:
            return
        self._task_files.setdefault(task.pk, []).append({
            "source": download.url,
            # Absolute, from where the client reached us (relative only for a trigger's session
            # without ENIGMA_PUBLIC_URL).
            "downloadUrl": f"{settings.ENIGMA_PUBLIC_URL or self.session.base_url}/files/{stored.pk}/download",
            "filename": stored.original_name,
            "timestamp": int(started * 1000),
            "fileId": stored.pk,
            "size": stored.size,
        })

    async def _collect_downloads(self, task: Task) -> list[dict[str, Any]]:
        """The files the browser downloaded during `task`, once their saves have finished."""
        if self._downloads:
            await asyncio.wait(set(self._downloads), timeout=30)
        return self._task_files.pop(task.pk, [])

    async def _supervise(self, task: Task, spec: TaskSpec, config: dict[str, Any]) -> Any:
        """Run the agent; maxDuration counts only time not spent paused or waiting for a human."""
        assert self.browser is not None
        if config.get("startingUrl"):
            await self.browser.goto(config["startingUrl"])
        callbacks = TaskCallbacks(self, task)
        gate = self._policy_gate(task) if self.policy_rules is not None else None
        self.agent_task = asyncio.create_task(
            run_agent(self.browser.page, spec, callbacks, provider=self.runtime.provider, gate=gate))
        budget = int(config.get("maxDuration", 300_000)) / 1000
        used = 0.0
        while True:
            started = time.monotonic()
            done, _ = await asyncio.wait({self.agent_task}, timeout=min(0.5, max(0.01, budget - used)))
            if done:
                return self.agent_task.result()
            if not (self.paused or self.human_control or self.waiting_human):
                used += time.monotonic() - started
            if used >= budget:
                self.agent_task.cancel()
                with contextlib.suppress(BaseException):
                    await self.agent_task
                raise TimeoutError()

    async def _fail_crashed(self, task: Task) -> None:
        self.current_task = self.agent_task = None
        entry = self.task_entries.pop(task.pk, None)
        if entry:
            await get_async_redis().xdel(stream_key(self.session_id), entry)
        failed = await db(Task.objects.filter(pk=task.pk, state__in=Task.OPEN_STATES).update)(
            state=Task.State.FAILED, completed_at=timezone.now(), code="INTERNAL_ERROR",
            error="The task failed because of an internal error")
        if failed:
            await self.emit("message", {"type": "error", "taskId": task.pk, "status": Task.State.FAILED,
                                        "error": "The task failed because of an internal error",
                                        "code": "INTERNAL_ERROR"}, task_id=task.pk)
            await atask_notify(task.pk, Task.State.FAILED)

    async def _finish_task(self, task: Task, outcome: dict[str, Any]) -> None:
        outcome = self.vault.scrub_obj(outcome)  # page text, URLs: clean, and no secret value
        state = outcome.pop("state")
        updated = await db(Task.objects.filter(pk=task.pk, state__in=Task.OPEN_STATES).update)(
            state=state, completed_at=timezone.now(), **outcome)
        entry = self.task_entries.pop(task.pk, None)
        if entry:
            await get_async_redis().xdel(stream_key(self.session_id), entry)
        if updated != 1:
            return  # the session ended meanwhile and closed the task
        try:
            await db(metering.session_meter)(session_id=self.session_id, task_id=task.pk)
        except Exception:
            logger.exception("metering task %s failed", task.pk)
        await db(task.refresh_from_db)()
        from .selectors import task_usage

        usage = await db(task_usage)(task)
        if state == Task.State.COMPLETED:
            data = {"message": task.result_message, **(task.result_data or {})}
            await self.emit("message", {"type": "task_completed", "sessionId": self.session_id,
                                        "taskId": task.pk, "data": data, "usage": usage}, task_id=task.pk)
        else:
            await self.emit("message", {"type": "error", "taskId": task.pk, "status": state,
                                        "error": task.error, "code": task.code,
                                        "details": task.error_details, "usage": usage}, task_id=task.pk)
        await atask_notify(task.pk, state)
        await self.checkpoint_browser()
        await db(session_tasks.task_finished.delay)(task.pk)  # webhooks, trigger runs

    async def raise_guardrail(self, task: Task, question: str) -> str:
        loop = asyncio.get_running_loop()
        self.guardrail_future = loop.create_future()
        self.waiting_human = True
        try:
            await db(Task.objects.filter(pk=task.pk).update)(state=Task.State.GUARDRAIL,
                                                             guardrail_question=self.vault.scrub(question))
            await self.emit("message", {"type": "guardrail_trigger", "taskId": task.pk,
                                        "data": {"type": "human_input_needed", "value": question}},
                            task_id=task.pk)
            await atask_notify(task.pk, Task.State.GUARDRAIL)
            answer = await self.guardrail_future
        finally:
            self.waiting_human = False
            self.guardrail_future = None
        await db(Task.objects.filter(pk=task.pk, state=Task.State.GUARDRAIL).update)(
            state=Task.State.RUNNING, guardrail_question="")
        await self.emit("message", {"type": "response_update", "taskId": task.pk,
                                    "data": {"message": "Got the answer; continuing the task."}},
                        task_id=task.pk)
        return answer

    async def add_usage(self, task: Task, input_tokens: int, output_tokens: int) -> None:
        task.input_tokens += input_tokens
        task.output_tokens += output_tokens
        await db(Task.objects.filter(pk=task.pk).update)(
            input_tokens=F("input_tokens") + input_tokens, output_tokens=F("output_tokens") + output_tokens)
        await db(BrowserSession.objects.filter(pk=self.session_id).update)(
            input_tokens=F("input_tokens") + input_tokens, output_tokens=F("output_tokens") + output_tokens)

    # ----- timers ---------------------------------------------------------------------------

    async def _timer_loop(self) -> None:
        """In-memory timers: the hard lifetime cap and inactivity (heartbeats are per worker)."""
        assert self.session is not None
        lifetime_end = self.session.created_at + timedelta(seconds=settings.ENIGMA_SESSION_MAX_LIFETIME_S)
        while not self.done.is_set():
            await asyncio.sleep(min(1.0, settings.ENIGMA_HEARTBEAT_S))
            if timezone.now() >= lifetime_end:
                await self.end(BrowserSession.State.TERMINATED, "max_lifetime")
                return
            idle = time.monotonic() - self.last_activity
            if self.current_task is None and idle >= settings.ENIGMA_INACTIVITY_TIMEOUT_S:
                await self.end(BrowserSession.State.TERMINATED, "expired")
                return

    def fenced(self) -> None:
        """The session ended elsewhere or another claim superseded ours: stop without writing."""
        logger.info("session %s ended elsewhere or was taken over", self.session_id)
        if self.agent_task and not self.agent_task.done():
            self.stop_requested = True
            self.agent_task.cancel()
        self.done.set()

    async def balance_exhausted(self) -> None:
        """End the session because the team's balance ran out; the running task fails."""
        if self.done.is_set():
            return
        task = self.current_task
        if task is not None and self.agent_task and not self.agent_task.done():
            self.stop_requested = True
            self.agent_task.cancel()
            await db(Task.objects.filter(pk=task.pk, state__in=Task.OPEN_STATES).update)(
                state=Task.State.FAILED, completed_at=timezone.now(), code="INSUFFICIENT_BALANCE",
                error="The team balance ran out while the task was running")
            await atask_notify(task.pk, Task.State.FAILED)
        await self.end(BrowserSession.State.TERMINATED, "balance_exhausted")
