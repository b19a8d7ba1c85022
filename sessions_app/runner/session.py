"""The session runner: hosts one session's browser context in a worker process for its life.

It opens the browser, makes the session active, then runs three loops until the session ends:
commands (`CommandApplier`), tasks one at a time (`task_run`) and timers (the lifetime cap,
inactivity). Its parts: `PolicyGate` (the automation policy), `ScreencastFeed` (live view and
recording), `DownloadKeeper` (files pages download). State changes of the session and its tasks
go through sessions_app.lifecycle; database calls go through `db()` so the event loop never
blocks on them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone
from playwright.async_api import Error as PlaywrightError
from redis.exceptions import RedisError

from agents.browser import BlockedNavigation, NetworkPolicy, SessionBrowser
from agents.secrets import SecretVault
from agents.types import SecretEntry, clean_obj
from enigma_site.redis import get_async_redis
from environments import proxies as environment_proxies
from environments import selectors as environment_selectors

from .. import lifecycle
from ..cdp import CdpRelay, cdp_acquire
from ..commands import stream_key
from ..config import SessionConfig, TaskConfig
from ..events import aevent_emit
from ..models import BrowserSession, Task
from .commands import CommandApplier
from .downloads import DownloadKeeper
from .policy_gate import PolicyGate
from .screencast import ScreencastFeed
from .support import StartSteps, db
from .task_run import task_run

if TYPE_CHECKING:
    from ..runtime import WorkerRuntime

logger = logging.getLogger(__name__)

# Blocked hosts reported per task (one event each); past it, one last event says so.
MAX_BLOCKED_HOSTS = 50
COMMAND_WAIT = timedelta(seconds=10)
CHECKPOINT_DELAY_S = 0.5
FINAL_CHECKPOINT_S = 5


class _SessionGone(Exception):
    """The session ended elsewhere or another worker holds it now: stop without writing."""


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
        self.config = SessionConfig()
        self.paused = False
        self.human_control = False
        self.stop_requested = False
        self.handing_off = False  # the worker drains: move the session to another host between tasks
        self.start_steps = StartSteps()  # the runtime marks the pick-up and claim before run()
        self.agent_task: asyncio.Task[Any] | None = None
        self.current_task: Task | None = None
        self.guardrail_future: asyncio.Future[str] | None = None
        self.waiting_human = False
        # Every secret this runner was given, to scrub what it stores and sends (URLs, titles,
        # storage checkpoints, events, results): a page may show a value after its task ended.
        self._secret_entries: list[SecretEntry] = []
        self.vault = SecretVault(())
        self.last_activity = time.monotonic()
        self.reading = False
        self.blocked_hosts: set[str] = set()
        self._checkpoint_pending = False
        self.cdp_relay: CdpRelay | None = None  # a CDP session's clients (sessions_app.cdp)
        self._egress_base = (0, 0)
        self.commands = CommandApplier(self)
        self.gate = PolicyGate(self, None)
        self.screencast = ScreencastFeed(self)
        self.downloads = DownloadKeeper(self)

    @property
    def policy_rules(self) -> dict[str, Any] | None:
        """The automation policy's rules the egress gate applies (WorkerRuntime.bind_policy_rules)."""
        return self.gate.rules

    async def _audit(self, **kwargs: Any) -> None:
        """Record a policy decision of the egress gate (WorkerRuntime.bind_policy_rules)."""
        await self.gate.audit(**kwargs)

    # ----- life ------------------------------------------------------------------------------

    async def run(self) -> None:
        loops: list[asyncio.Task[Any]] = []
        try:
            try:
                await self._open()
            finally:
                self.runtime.host.refill()  # the warm context this session took (a no-op when full)
            loops = [
                asyncio.create_task(coro) for coro in (self.commands.loop(), self._task_loop(), self._timer_loop())
            ]
            self.reading = True
            await self.runtime.commands_watch(self)
            await self._supervise_loops(loops)
        except _SessionGone:
            logger.info("session %s is no longer ours", self.session_id)
        except asyncio.CancelledError:
            logger.info("runner of session %s cancelled (worker shutting down)", self.session_id)
            raise
        except Exception:  # the runner's boundary: whatever broke it, the session fails
            logger.exception("session %s runner crashed", self.session_id)
            try:
                await self.end(BrowserSession.State.FAILED, "error")
            except (DatabaseError, RedisError, OSError):
                logger.exception("could not end session %s after its runner crashed", self.session_id)
        finally:
            await self._close(loops)

    async def _open(self) -> None:
        """Open the session's browser (restored from its checkpoint after a takeover), load its
        policy and commands, load its first page, and make it active."""
        steps = self.start_steps
        steps.mark("loop")
        session = await db(BrowserSession.objects.select_related("team").get)(pk=self.session_id)
        self.session, self.config = session, SessionConfig.from_json(session.config)
        self._egress_base = (session.egress_bytes_sent, session.egress_bytes_received)
        steps.mark("load")
        takeover = session.started_at is not None
        self.paused, self.human_control = session.paused, session.human_control
        self.policy = NetworkPolicy(
            avoid_domains=list(self.config.avoid_domains),
            allowed_private_hosts=settings.ENIGMA_ALLOWED_PRIVATE_HOSTS,
            on_blocked=self._on_blocked,
        )
        storage_state = session.storage_state if takeover else None
        if storage_state is None and self.config.environment_id:
            storage_state = await db(environment_selectors.environment_storage_state)(
                environment_id=self.config.environment_id
            )
        proxy = None
        if self.config.proxy:
            proxy = await environment_proxies.aproxy_load(self.session_id)
            if proxy is None:
                raise RuntimeError("the session's proxy settings are gone")
        # A CDP session gets its own Chromium, which its CDP clients drive too (issue 16).
        if self.config.cdp:
            self.browser = await cdp_acquire(self)(policy=self.policy, storage_state=storage_state, proxy=proxy)
        else:
            # The warm pool is refilled once this session is active (in run), not while its
            # first page loads.
            self.browser = await self.runtime.host.acquire(
                policy=self.policy, storage_state=storage_state, proxy=proxy, defer_refill=True
            )
        self.browser.page.on("framenavigated", self._on_navigated)
        self.browser.context.on("page", self.downloads.watch)
        self.downloads.watch(self.browser.page)
        self.gate = PolicyGate(self, self.config.policy_id)
        await self.gate.load()
        steps.mark("context")
        await self.commands.load()
        steps.mark("commands")
        url = (
            session.current_url if takeover else ("" if self.config.initial_prompt else self.config.starting_url or "")
        )
        page: dict[str, str] = {}
        if url:
            try:
                await self.browser.goto(url)
            except (BlockedNavigation, PlaywrightError):
                logger.info("the first page of session %s did not load", self.session_id, exc_info=True)
            # Written with the activation, so the session is active with its currentUrl at
            # once (the storage checkpoint follows the navigation, off this path).
            current_url, title = await self.browser.url_and_title()
            page = {
                "current_url": self.vault.scrub(current_url)[:4000],
                "current_title": self.vault.scrub(title)[:1000],
            }
            steps.mark("navigation")
        if not await db(lifecycle.session_activate)(
            session_id=self.session_id,
            generation=self.generation,
            started_at=session.started_at,
            takeover=takeover,
            page=page,
        ):
            raise _SessionGone()
        steps.mark("activate")
        steps.log(session, takeover=takeover)
        await self.screencast.open_recording()

    async def _close(self, loops: list[asyncio.Task[Any]]) -> None:
        for loop_task in loops:
            loop_task.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        if self.agent_task and not self.agent_task.done():
            self.agent_task.cancel()
        if self.cdp_relay is not None:
            await self.cdp_relay.close()
        if self.browser is not None:
            try:
                await self.browser.close()
            except PlaywrightError:
                logger.info("the browser of session %s was gone already", self.session_id)
        ended = await db(
            lambda: not BrowserSession.objects.filter(pk=self.session_id, state__in=BrowserSession.LIVE_STATES).exists()
        )()
        await self.screencast.close_recording(ended=ended)
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

    def stop_agent(self) -> None:
        """Stop the running task's agent (its task ends as stopped, unless settled otherwise)."""
        if self.agent_task and not self.agent_task.done():
            self.stop_requested = True
            self.agent_task.cancel()

    async def end(self, state: str, reason: str) -> None:
        """End the session (once, with its final charge: lifecycle.session_end) and stop the runner."""
        self.stop_agent()
        if self.config.environment_id:
            # session_end saves the last checkpoint into the environment: make it the latest.
            try:
                await asyncio.wait_for(self.checkpoint_browser(), FINAL_CHECKPOINT_S)
            except (TimeoutError, DatabaseError):
                logger.warning("no final checkpoint of session %s", self.session_id, exc_info=True)
        await db(BrowserSession.objects.filter(pk=self.session_id, generation=self.generation).update)(
            **self._egress_fields()
        )
        await db(lifecycle.session_end)(
            session_id=self.session_id, state=state, reason=reason, generation=self.generation
        )
        self.done.set()

    def fenced(self) -> None:
        """The session ended elsewhere or another claim superseded ours: stop without writing."""
        logger.info("session %s ended elsewhere or was taken over", self.session_id)
        self.stop_agent()
        self.done.set()

    async def balance_exhausted(self) -> None:
        """End the session because the team's balance ran out; the running task fails."""
        if self.done.is_set():
            return
        task = self.current_task
        if task is not None and self.agent_task and not self.agent_task.done():
            self.stop_agent()
            await db(lifecycle.task_fail)(
                session_id=self.session_id,
                task_id=task.pk,
                code="INSUFFICIENT_BALANCE",
                error="The team balance ran out while the task was running",
                announce=False,
            )
        await self.end(BrowserSession.State.TERMINATED, "balance_exhausted")

    # ----- tasks -----------------------------------------------------------------------------

    async def _task_loop(self) -> None:
        """Run the queued tasks one at a time. A task that crashes the runner's own code fails
        with INTERNAL_ERROR and the next one runs: no page can wedge the session."""
        while not self.done.is_set():
            if self.handing_off:  # checked on the loop right before a task is taken: none starts here
                await self.runtime.session_hand_off(self)
                return
            task = await db(
                lambda: Task.objects.filter(session_id=self.session_id, state=Task.State.QUEUED).order_by("seq").first()
            )()
            if task is None:
                # A newTask command sets `wake`; the timeout is only a safety net.
                self.wake.clear()
                if not self.handing_off:
                    await self._wait_wake(5.0)
                continue
            if task.pk not in self.commands.task_entries and timezone.now() - task.created_at < COMMAND_WAIT:
                # The row is written before its newTask command: wait for the command and the
                # secrets it carries (a command lost with Redis does not hold the task forever).
                self.wake.clear()
                await self._wait_wake(0.5)
                continue
            if not await db(lifecycle.task_start)(session_id=self.session_id, task_id=task.pk):
                continue
            config: TaskConfig | None = None
            try:
                config = TaskConfig.from_json(task.config)
                await task_run(self, task, config)
            except Exception:  # the boundary of one task: record the failure, go on
                logger.exception("task %s of session %s crashed", task.pk, self.session_id)
                await self._fail_crashed(task)
            self.last_activity = time.monotonic()
            if config is not None and config.terminate_on_completion and not self.done.is_set():
                await self.end(BrowserSession.State.COMPLETED, "terminateOnCompletion")

    async def _wait_wake(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self.wake.wait(), timeout=timeout)
        except TimeoutError:
            return

    async def _fail_crashed(self, task: Task) -> None:
        self.current_task = self.agent_task = None
        await self.commands.forget_task(task.pk)
        await db(lifecycle.task_fail_crashed)(session_id=self.session_id, task_id=task.pk)

    async def raise_guardrail(self, task: Task, question: str) -> str:
        """Hold the task until a human answers `question` (a guardrail command)."""
        self.guardrail_future = asyncio.get_running_loop().create_future()
        self.waiting_human = True
        try:
            await db(lifecycle.task_guardrail_raise)(
                session_id=self.session_id, task_id=task.pk, question=self.vault.scrub(question)
            )
            answer = await self.guardrail_future
        finally:
            self.waiting_human = False
            self.guardrail_future = None
        await db(lifecycle.task_guardrail_answered)(session_id=self.session_id, task_id=task.pk)
        return answer

    # ----- timers ----------------------------------------------------------------------------

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

    # ----- flags, secrets, events ------------------------------------------------------------

    async def set_flags(self, **flags: bool) -> None:
        """Set paused / human_control here and on the session row; wake the agent when both are off."""
        for name, value in flags.items():
            setattr(self, name, value)
        await db(BrowserSession.objects.filter(pk=self.session_id, generation=self.generation).update)(**flags)
        if not (self.paused or self.human_control):
            self.resumed.set()

    def add_secrets(self, entries: list[dict[str, Any]]) -> None:
        self._secret_entries += [SecretEntry(match=e["match"], fields=e["fields"]) for e in entries]
        self.vault = SecretVault(self._secret_entries)

    async def emit(self, name: str, payload: dict[str, Any], *, task_id: str = "") -> None:
        await aevent_emit(session_id=self.session_id, name=name, payload=self.vault.scrub_obj(payload), task_id=task_id)

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
        asyncio.get_running_loop().create_task(
            self.emit("message", {"type": "response_update", "data": data, "taskId": task_id}, task_id=task_id)
        )

    # ----- the browser's state ---------------------------------------------------------------

    def _on_navigated(self, frame: Any) -> None:
        if self.browser is None or frame != self.browser.page.main_frame or self._checkpoint_pending:
            return
        self._checkpoint_pending = True
        asyncio.get_running_loop().create_task(self._checkpoint_soon())

    async def _checkpoint_soon(self) -> None:
        await asyncio.sleep(CHECKPOINT_DELAY_S)
        self._checkpoint_pending = False
        await self.checkpoint_browser()

    async def checkpoint_browser(self) -> None:
        """Save storage state, URL and title so another worker can restore the session."""
        if self.browser is None or self.done.is_set():
            return
        try:
            state = await self.browser.storage_state()
        except PlaywrightError:  # the context is closing
            return
        url, title = await self.browser.url_and_title()
        # Page text is cleaned and scrubbed like everything else we store (spec README §9).
        await db(
            BrowserSession.objects.filter(
                pk=self.session_id, generation=self.generation, state__in=BrowserSession.LIVE_STATES
            ).update
        )(
            storage_state=self.vault.scrub_storage_state(clean_obj(state)),
            current_url=self.vault.scrub(url)[:4000],
            current_title=self.vault.scrub(title)[:1000],
            **self._egress_fields(),
        )

    def _egress_fields(self) -> dict[str, int]:
        """The session's egress byte counts: what earlier hosts counted plus this browser's."""
        sent, received = self.browser.egress_bytes if self.browser is not None else (0, 0)
        return {
            "egress_bytes_sent": self._egress_base[0] + sent,
            "egress_bytes_received": self._egress_base[1] + received,
        }
