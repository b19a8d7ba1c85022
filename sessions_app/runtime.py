"""The browser runtime of one worker process: one Chromium, an event loop, many session runners.

Celery runs `host_session` in a thread pool (one thread per hosted session, up to the worker's
capacity); each call claims the session and blocks on its runner, which lives on this process's
single asyncio loop next to the shared Chromium and its warm contexts. The loop also heart-beats
the worker into the registry and runs the orphan sweep.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import secrets
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import DatabaseError, close_old_connections
from kombu.exceptions import OperationalError as KombuOperationalError
from playwright.async_api import Error as PlaywrightError
from redis.exceptions import RedisError

from agents.browser import BrowserHost, EgressSettings, NetworkPolicy
from agents.cdp import CdpPool
from agents.config import AgentSettings
from agents.providers import get_provider
from enigma_site.redis import get_async_redis
from policies import engine as policy_engine

from . import cdp, lifecycle, metering, registry, services, sweep
from .commands import stream_key
from .runner import SessionRunner, StartSteps, db
from .tasks import session_dispatch

logger = logging.getLogger(__name__)

# Network blocks a policy audits per session (distinct URLs); a hostile page cannot flood the log.
MAX_NETWORK_AUDITS = 500


def egress_settings() -> EgressSettings:
    """The gate's settings from Django's: sandbox mode, resolver, own services, managed upstream."""
    resolver = None
    if settings.ENIGMA_EGRESS_RESOLVER:
        host, _, port = settings.ENIGMA_EGRESS_RESOLVER.rpartition(":")
        resolver = (host.strip("[]"), int(port))
    trusted: tuple[str, ...] = ()
    managed = settings.ENIGMA_MANAGED_PROXY_URL
    if managed:
        parts = urlsplit(managed)
        trusted = (f"{parts.hostname}:{parts.port}",)
    return EgressSettings(
        sandbox=settings.ENIGMA_EGRESS_SANDBOX,
        resolver=resolver,
        own_addresses=tuple(settings.ENIGMA_OWN_ADDRESSES),
        trusted_upstreams=trusted,
        browser_user=settings.ENIGMA_BROWSER_USER,
        response_timeout_s=settings.ENIGMA_EGRESS_RESPONSE_TIMEOUT_S,
        idle_timeout_s=settings.ENIGMA_EGRESS_IDLE_TIMEOUT_S,
        max_connections=settings.ENIGMA_EGRESS_MAX_CONNECTIONS,
    )


class WorkerRuntime:
    def __init__(self) -> None:
        self.host_id = registry.host_id()
        self.worker_id = f"{self.host_id}:{os.getpid()}:{secrets.token_hex(3)}"
        self.capacity = settings.ENIGMA_WORKER_CAPACITY
        self.loop = asyncio.new_event_loop()
        self.host = BrowserHost(
            chromium_path=settings.CHROMIUM_PATH, warm_pool_size=settings.ENIGMA_WARM_POOL, egress=egress_settings()
        )
        self.cdp = CdpPool(self.host, warm_pool_size=cdp.warm_pool_size())  # CDP sessions' own browsers
        # Where the gateways dial this worker's CDP relays (its url is "" when that path is off).
        self.cdp_relay_server = cdp.RelayServer(self._cdp_relay)
        self.provider = get_provider(
            AgentSettings(
                provider=settings.ENIGMA_AGENT_PROVIDER,
                anthropic_api_key=settings.ANTHROPIC_API_KEY,
                anthropic_base_url=settings.ANTHROPIC_BASE_URL,
                anthropic_model=settings.ENIGMA_ANTHROPIC_MODEL,
                anthropic_max_retries=settings.ENIGMA_ANTHROPIC_MAX_RETRIES,
                anthropic_retry_base_s=settings.ENIGMA_ANTHROPIC_RETRY_BASE_S,
                screenshots=settings.ENIGMA_AGENT_SCREENSHOTS,
            )
        )
        self.runners: dict[str, SessionRunner] = {}
        self._bound_rules: dict[str, dict[str, Any]] = {}  # the policy rules each session's gate slot saw
        # Sessions hosted here whose reservation no heartbeat has dropped yet (registry).
        self._uncounted: set[str] = set()
        self._beat_lock = asyncio.Lock()
        self._thread = threading.Thread(target=self._run_loop, name="enigma-runtime", daemon=True)
        self._background: list[asyncio.Task[Any]] = []
        self._stopping = False
        self.draining = False  # takes no new sessions; hands its sessions to other hosts (drain)

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        # Database calls of all hosted sessions run here (sync_to_async, thread_sensitive=False).
        self.loop.set_default_executor(ThreadPoolExecutor(max_workers=32, thread_name_prefix="enigma-db"))
        self.loop.run_forever()

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._boot(), self.loop).result(timeout=60)
        logger.info("worker %s ready: capacity %s", self.worker_id, self.capacity)

    def _cdp_relay(self, session_id: str) -> cdp.CdpRelay | None:
        runner = self.runners.get(session_id)
        return runner.cdp_relay if runner is not None else None

    async def _boot(self) -> None:
        await self.cdp_relay_server.start()
        if self.cdp_relay_server.listening:  # one of the product's own services: no page may reach it
            gate = self.host.gate
            own = (*gate.settings.own_addresses, *self.cdp_relay_server.listening)
            gate.settings = dataclasses.replace(gate.settings, own_addresses=own)
        await self.host.start()
        await self.cdp.start()
        await self._beat()
        self._background = [
            asyncio.create_task(self._command_reader()),
            asyncio.create_task(self._heartbeat_loop()),
            asyncio.create_task(self._sweep_loop()),
            asyncio.create_task(self._meter_loop()),
        ]

    @property
    def _wake_key(self) -> str:
        return f"enigma:wake:{self.worker_id}"

    async def commands_watch(self, runner: SessionRunner) -> None:
        """Make the shared reader include a newly started runner's stream at once."""
        await get_async_redis().xadd(self._wake_key, {"w": "1"}, maxlen=10, approximate=False)

    async def _command_reader(self) -> None:
        """One blocking XREAD over the streams of every hosted session (one Redis connection
        per worker, not one per session); entries go to each runner's queue in order."""
        redis = get_async_redis()
        wake_id = "$"
        while True:
            try:
                streams: dict[Any, Any] = {
                    stream_key(sid): r.commands.last_id
                    for sid, r in self.runners.items()
                    if r.reading and not r.done.is_set()
                }
                streams[self._wake_key] = wake_id
                # The client decodes responses: [(stream key, [(entry id, fields), ...]), ...]
                result: list[tuple[str, list[tuple[str, dict[str, str]]]]] = await redis.xread(  # type: ignore[assignment]
                    streams, block=2000, count=100
                )
                for key, entries in result or []:
                    if key == self._wake_key:
                        wake_id = entries[-1][0]
                        continue
                    runner = self.runners.get(key.rsplit(":", 1)[-1])
                    if runner is None:
                        continue
                    for entry_id, fields in entries:
                        runner.commands.last_id = entry_id
                        runner.commands.queue.put_nowait((entry_id, fields))
            except Exception:  # the loop's boundary: it must outlive any failure
                logger.exception("command reader failed; retrying")
                await asyncio.sleep(1)

    async def _beat(self) -> None:
        # Free slots are offered only while the task consumer takes tasks from the broker, and
        # none while draining (its sessions are about to move to other hosts).
        # One beat at a time: a beat written after a newer one would undo its count.
        async with self._beat_lock:
            capacity = self.capacity if registry.consumer_lost_for() is None else len(self.runners)
            counted = set(self._uncounted)  # taken with the count they are part of
            await db(registry.worker_heartbeat)(
                worker_id=self.worker_id,
                capacity=0 if self.draining else capacity,
                # A runner whose session has ended holds no slot: it is only closing its browser.
                sessions=sum(1 for runner in self.runners.values() if not runner.done.is_set()),
                warm=self.host.warm_count,
                contexts=self.host.open_contexts,
                draining=self.draining,
                counted=counted,
            )
            self._uncounted -= counted

    async def _heartbeat_loop(self) -> None:
        """One write per interval for the worker and all its sessions, whatever their number."""
        while True:
            await asyncio.sleep(settings.ENIGMA_HEARTBEAT_S)
            try:
                if not await self.host.healthy():
                    logger.error("Chromium is gone; this worker stops heart-beating its sessions")
                    continue
                await self._beat()
                hosted = {sid: runner.generation for sid, runner in self.runners.items() if not runner.done.is_set()}
                if hosted:
                    alive = await db(services.sessions_heartbeat)(worker_id=self.worker_id, hosted=hosted)
                    for sid in set(hosted) - alive:
                        runner = self.runners.get(sid)
                        if runner is not None:
                            runner.fenced()
            except Exception:  # the loop's boundary: it must outlive any failure
                logger.exception("worker heartbeat failed")

    async def _meter_loop(self) -> None:
        """Charge every hosted session in turn; end those whose team balance ran out."""
        while True:
            await asyncio.sleep(settings.ENIGMA_METER_INTERVAL_S)
            for sid, runner in list(self.runners.items()):
                if runner.done.is_set() or runner.session is None:
                    continue
                try:
                    balance = await db(metering.session_meter)(session_id=sid)
                    if balance <= 0:
                        await runner.balance_exhausted()
                except Exception:  # the loop's boundary: one session's failure does not stop the others'
                    logger.exception("metering session %s failed", sid)

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(settings.ENIGMA_SWEEP_INTERVAL_S)
            try:
                await db(sweep.sessions_sweep_locked)(holder=self.worker_id)
            except Exception:  # the loop's boundary: it must outlive any failure
                logger.exception("session sweep failed")

    def bind_policy_rules(self, runner: SessionRunner) -> None:
        """Make the egress gate apply the session's automation-policy domain rules to every
        connection (sub-resources, workers, WebSockets, redirect hops), each block audited. A
        guardrail domain is blocked at the network unless a human approved it for the session.

        The gate reads the runner's current rules at each judgement; call this again after
        reloading them: when they changed, the session's open connections are cut (a tunnel
        opened under the old rules must not outlive them)."""
        rules, policy = runner.policy_rules, runner.policy
        if rules is None or policy is None:
            return
        if policy.domain_rule is not None:
            if rules != self._bound_rules.get(runner.session_id):
                self._bound_rules[runner.session_id] = rules
                policy.changed()
            return
        self._bound_rules[runner.session_id] = rules
        audited: set[str] = set()

        async def audit(url: str, decision: policy_engine.Decision) -> None:
            if url in audited or len(audited) >= MAX_NETWORK_AUDITS:
                return
            audited.add(url)
            if decision.action == "guardrail":
                decision = policy_engine.Decision("block", f"{decision.rule}, not approved for this request")
            await runner._audit(source="network", name="request", target=url, url=url, decision=decision)

        def domain_rule(url: str) -> policy_engine.Decision:
            current = runner.policy_rules
            return policy_engine.evaluate_domain(current, url) if current else policy_engine.Decision("allow", "")

        policy.domain_rule = domain_rule
        policy.on_policy_block = audit

    def approve_host(self, policy: NetworkPolicy | None, url: str) -> None:
        """A human approved a guardrail navigation to `url`: its host may load for the session."""
        host = (urlsplit(url).hostname or "").lower()
        if policy is not None and host:
            policy.approved_hosts.add(host)

    def host_session(self, session_id: str) -> None:
        """Claim and host the session until it ends (blocks the calling Celery thread)."""
        if self._stopping:
            return
        steps = StartSteps()
        generation = lifecycle.session_claim(session_id=session_id, worker_id=self.worker_id)
        if generation is None:  # ended before any worker claimed it, or a duplicate delivery
            registry.host_unreserve(self.host_id, session_id)
            return
        # Claimed: the reservation stays until the heartbeat that counts the session drops it
        # in the same transaction (_host, _beat), so placement never sees it twice or not at all.
        close_old_connections()
        steps.mark("claim")
        runner = SessionRunner(self, session_id, generation)
        runner.start_steps = steps
        future: Future[None] = asyncio.run_coroutine_threadsafe(self._host(runner), self.loop)
        future.result()

    async def _host(self, runner: SessionRunner) -> None:
        session_id = runner.session_id
        self.runners[session_id] = runner
        self._uncounted.add(session_id)  # still reserved on this host until a beat counts it
        # Placement sees the session here from now on (off the start's path).
        beat = asyncio.create_task(self._beat_hosting())
        freed = asyncio.create_task(self._beat_when_done(runner))
        try:
            await runner.run()
        finally:
            self.runners.pop(session_id, None)
            self._bound_rules.pop(session_id, None)
            await beat
            freed.cancel()
            await self._beat()

    async def _beat_when_done(self, runner: SessionRunner) -> None:
        """Offer the slot as soon as the session ends, while its browser is still closing."""
        await runner.done.wait()
        try:
            await self._beat()
        except RedisError:
            logger.exception("worker heartbeat failed")

    async def _beat_hosting(self) -> None:
        try:
            await self._beat()  # counts the session and drops its reservation
        except RedisError:
            logger.exception("worker heartbeat failed")

    def drain(self, *, grace_s: float) -> None:
        """Take no new sessions, let running tasks finish for up to `grace_s`, then hand every
        hosted session to another host (blocks the calling thread until none is left here)."""
        asyncio.run_coroutine_threadsafe(self._drain(grace_s), self.loop).result()

    async def _drain(self, grace_s: float) -> None:
        self.draining = True
        await self._beat()
        logger.info("worker %s drains %s sessions (grace %.0f s)", self.worker_id, len(self.runners), grace_s)
        deadline = self.loop.time() + grace_s
        while self.runners and self.loop.time() < deadline:
            for runner in list(self.runners.values()):  # runners still starting included
                if not runner.handing_off:
                    runner.handing_off = True
                    runner.wake.set()  # an idle session moves now, a busy one after its task
            await asyncio.sleep(0.05)
        for runner in list(self.runners.values()):
            await self._fail_overdue(runner)
        while self.runners and self.loop.time() < deadline + 30:
            await asyncio.sleep(0.05)

    async def _fail_overdue(self, runner: SessionRunner) -> None:
        """A task still running when the drain's grace ends fails (its side effects on the site
        are unknown, as for a lost worker); the session then moves without it."""
        task = runner.current_task
        if task is None or runner.agent_task is None or runner.agent_task.done():
            return
        await db(lifecycle.task_fail)(
            session_id=runner.session_id,
            task_id=task.pk,
            code="INSTANCE_LOST",
            error="The browser host was drained before the task finished; the task was not completed",
            message="The browser host was drained before the task finished",
        )
        runner.stop_agent()

    async def session_hand_off(self, runner: SessionRunner) -> None:
        """Move a session to another host between its tasks: its checkpoint (cookies, storage,
        URL) is what the next host restores, as in an orphan takeover, with no task failed."""
        await runner.checkpoint_browser()
        moved = await db(lifecycle.session_hand_off)(
            session_id=runner.session_id, generation=runner.generation, worker_id=self.worker_id
        )
        try:
            if moved:  # sent before the runner stops: its end cancels this loop, and the worker may exit
                await db(session_dispatch)(session_id=runner.session_id, exclude=(self.host_id,), fallback=False)
        except (RedisError, OSError, KombuOperationalError):
            # Orphaned already: the sweep sends it on (sessions_app.sweep); it must not fail here.
            logger.warning("could not send session %s to another host; the sweep will", runner.session_id)
        finally:
            runner.done.set()

    def stop(self) -> None:
        """Stop hosting: runners stop without ending their sessions (another worker takes over)."""
        if self._stopping or not self._thread.is_alive():
            return
        self._stopping = True

        async def _shutdown() -> None:
            for runner in list(self.runners.values()):
                runner.done.set()
            await asyncio.sleep(0.2)
            for task in self._background:
                task.cancel()
            await self.cdp_relay_server.stop()
            await self.cdp.stop()
            await self.host.stop()
            await db(registry.worker_unregister)(self.worker_id)
            await get_async_redis().delete(self._wake_key)

        try:
            asyncio.run_coroutine_threadsafe(_shutdown(), self.loop).result(timeout=20)
        except (TimeoutError, PlaywrightError, RedisError, DatabaseError):
            logger.exception("runtime shutdown failed")
        self.loop.call_soon_threadsafe(self.loop.stop)


_runtime: WorkerRuntime | None = None
_lock = threading.Lock()


def get_runtime() -> WorkerRuntime:
    global _runtime
    with _lock:
        if _runtime is None:
            _runtime = WorkerRuntime()
            _runtime.start()
        return _runtime


def stop_runtime() -> None:
    if _runtime is not None:
        _runtime.stop()
