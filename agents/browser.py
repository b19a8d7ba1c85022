"""The browser runtime: one Chromium per worker process, one isolated context per session.

Pure Playwright (async API), no Django. `BrowserHost` owns the Chromium process and a pool of
warm contexts (a context plus a blank page, with the network guard already installed), because
creating a context and page costs 250-350 ms while taking a warm one costs well under a
millisecond. `SessionBrowser` is what the session runner and the agent drive: navigation, clicks
in page coordinates, typing, keys, storage state and a throttled CDP screencast.

Chromium has no network of its own: it runs in an empty network namespace whose only way out is
the egress gate (`agents.egress`), an HTTP proxy on this process's loop that judges every
connection of every context by the session's rules (spec decision 10). Each context is created
with its own proxy port, which is how the gate tells sessions apart, so warm contexts serve
sessions with a customer proxy too (the gate chains to it). There is no request interception in
the browser (it cost ~100 ms a page): `goto` asks `agents.netguard.NetworkGuard` (the rules alone,
no DNS) before navigating, and reads the gate's refusals (a 403 with `X-Enigma-Blocked`, a failed
tunnel) as `BlockedNavigation` with the gate's reason.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import logging
import os
import random
import shutil
from collections.abc import Awaitable, Callable
from typing import Any

from playwright.async_api import (
    Browser,
    BrowserContext,
    CDPSession,
    Page,
    Playwright,
    async_playwright,
)
from playwright.async_api import (
    Error as PlaywrightError,
)

from agents.egress import EgressSettings, sandbox
from agents.egress.gate import Gate, SessionEgress, Upstream
from agents.netguard import NetworkGuard, NetworkPolicy

__all__ = [
    "BlockedNavigation",
    "BrowserHost",
    "EgressSettings",
    "NetworkPolicy",
    "SessionBrowser",
    "is_valid_key",
]

logger = logging.getLogger(__name__)

FrameCallback = Callable[[bytes, dict[str, Any]], Awaitable[None] | None]

CHROMIUM_ARGS = [
    # No --no-sandbox: Chromium runs as an unprivileged user (ENIGMA_BROWSER_USER) with its own
    # user-namespace sandbox (agents/egress/nslaunch.py).
    "--disable-gpu",
    "--disable-dev-shm-usage",  # /dev/shm is small in containers
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-extensions",
    "--mute-audio",
    # Memory: the back/forward cache keeps every left page alive in its renderer.
    "--disable-back-forward-cache",
    # WebRTC must not reveal or reach private interfaces behind the gate's back (in the
    # namespace there are none; this matters when the sandbox is off).
    "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
]
# Without the namespace (ENIGMA_EGRESS_SANDBOX=off), Chromium must at least not resolve names
# itself: the gate does, and a page's DNS prefetch would otherwise leave around it.
UNSANDBOXED_ARGS = ["--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"]
# Chromium's messages when the gate refused a request.
_GATE_REFUSALS = ("ERR_TUNNEL_CONNECTION_FAILED", "ERR_BLOCKED_BY_CLIENT", "ERR_PROXY_CONNECTION_FAILED")

# Named keys accepted by key_press, canonical spelling (Playwright's names).
_NAMED_KEYS = {
    "Enter", "Escape", "Tab", "Backspace", "Delete", "Insert", "Space",
    "ArrowUp", "ArrowDown", "ArrowLeft", "ArrowRight",
    "PageUp", "PageDown", "Home", "End",
    *(f"F{n}" for n in range(1, 13)),
}  # fmt: skip
_KEY_ALIASES = {
    "return": "Enter", "esc": "Escape", "del": "Delete", "spacebar": "Space",
    "up": "ArrowUp", "down": "ArrowDown", "left": "ArrowLeft", "right": "ArrowRight",
}  # fmt: skip
_MODIFIERS = {
    "control": "Control", "ctrl": "Control", "shift": "Shift", "alt": "Alt", "option": "Alt",
    "meta": "Meta", "cmd": "Meta", "command": "Meta", "controlormeta": "ControlOrMeta",
}  # fmt: skip
_NAMED_BY_LOWER = {name.lower(): name for name in _NAMED_KEYS} | _KEY_ALIASES


def _canonical_single_key(key: str) -> str | None:
    if len(key) == 1:
        return key if key.isprintable() else None
    return _NAMED_BY_LOWER.get(key.lower())


def canonical_key(key: str) -> str | None:
    """Return the Playwright spelling of a KEY_PRESS key ("ctrl+A" -> "Control+A"), or None if
    the key is not one we accept."""
    if not isinstance(key, str) or not key or len(key) > 40:
        return None
    if len(key) == 1 or key == "+":
        return _canonical_single_key(key)
    parts = key.split("+")
    if key.endswith("++"):  # "Control++": the final key is "+"
        parts = [*key[:-2].split("+"), "+"]
    *mods, last = parts
    canonical_mods = [_MODIFIERS.get(m.lower()) for m in mods]
    final = _canonical_single_key(last)
    if final is None or any(m is None for m in canonical_mods):
        return None
    if len(set(canonical_mods)) != len(canonical_mods):
        return None
    return "+".join([*(m for m in canonical_mods if m), final])


def is_valid_key(key: str) -> bool:
    """True for keys KEY_PRESS accepts: named keys (Enter, Escape, Tab, Backspace, Delete,
    arrows, PageUp/PageDown, Home, End, F1-F12, ...), single printable characters, and
    modifier combos such as "Control+a" or "Shift+Tab". Named keys are case-insensitive."""
    return canonical_key(key) is not None


class BlockedNavigation(Exception):
    """The network guard refused the main document of a navigation."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"navigation to {url} blocked: {reason}")
        self.url = url
        self.reason = reason


class _Slot:
    """A context with its guard and its port at the gate; acquire fills in the policy."""

    def __init__(self, context: BrowserContext, page: Page, guard: NetworkGuard, egress: SessionEgress) -> None:
        self.context = context
        self.page = page
        self.guard = guard
        self.egress = egress
        self.session: SessionBrowser | None = None


class SessionBrowser:
    """One session's isolated browser context and its current page."""

    def __init__(
        self,
        slot: _Slot,
        *,
        on_close: Callable[[SessionBrowser], None],
    ) -> None:
        self._slot = slot
        self._egress = slot.egress
        self.context = slot.context
        self.page = slot.page
        self._guard = slot.guard
        self._on_close = on_close
        self._closed = False
        self._blocked_navigations: dict[str, str] = {}
        self._screencast: _Screencast | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.context.on("page", self._on_new_page)
        self._watch_page(self.page)
        slot.session = self

    # Navigation ---------------------------------------------------------------------------

    async def goto(self, url: str, timeout_ms: int = 30000) -> None:
        """Navigate the current page and wait for `load`. Raise BlockedNavigation if the guard
        or the gate refused the main document or a redirect hop of it; other failures raise
        Playwright's Error."""
        reason = self._guard.check(url)
        if reason is not None:
            self._guard.report(url, reason)
            raise BlockedNavigation(url, reason)
        self._blocked_navigations.clear()
        self._egress.recent_blocks.clear()
        try:
            response = await self.page.goto(url, timeout=timeout_ms)
        except PlaywrightError as exc:
            if any(marker in exc.message for marker in _GATE_REFUSALS) and self._egress.recent_blocks:
                target, reason = self._egress.recent_blocks[-1]
                self._blocked_navigations.setdefault(target, reason)
            if "ERR_BLOCKED_BY_CLIENT" not in exc.message and not self._blocked_navigations:
                raise
            await self._await_error_page()
            raise self._blocked_error(url) from exc
        if response is not None and response.status == 403:
            gate_reason = await response.header_value("x-enigma-blocked")
            if gate_reason:
                raise BlockedNavigation(response.url, gate_reason)
        if self._blocked_navigations:
            raise self._blocked_error(url)

    async def _await_error_page(self) -> None:
        # Chromium commits its error page after goto has already failed; wait for it, or the
        # caller's next navigation is interrupted by it.
        page = self.page
        if page.url.startswith("chrome-error:"):
            return
        try:
            await page.wait_for_event(
                "framenavigated",
                predicate=lambda frame: frame == page.main_frame,
                timeout=2000,
            )
        except PlaywrightError:
            logger.debug("no error page after a blocked navigation", exc_info=True)

    def _blocked_error(self, url: str) -> BlockedNavigation:
        blocked_url, reason = next(iter(self._blocked_navigations.items()), (url, "blocked_by_client"))
        return BlockedNavigation(blocked_url, reason)

    async def url_and_title(self) -> tuple[str, str]:
        """Return the current page's URL and title (title "" while the page navigates)."""
        try:
            title = await self.page.title()
        except PlaywrightError:
            title = ""
        return self.page.url, title

    # Input --------------------------------------------------------------------------------

    async def click(self, x: float, y: float, *, double: bool = False) -> None:
        """Click (or double-click) at page coordinates: (0, 0) is the viewport's top left."""
        if double:
            await self.page.mouse.dblclick(x, y)
        else:
            await self.page.mouse.click(x, y)

    async def type_text(self, text: str, *, human_like: bool = False) -> None:
        """Type into the focused element. With human_like, one key at a time with random
        30-120 ms pauses, for sites that watch typing rhythm. `text` may be a secret: never
        log it."""
        if not human_like:
            await self.page.keyboard.type(text)
            return
        for char in text:
            await self.page.keyboard.type(char)
            await asyncio.sleep(random.uniform(0.03, 0.12))

    async def key_press(self, key: str) -> None:
        """Press a key or combo (see is_valid_key); raise ValueError for any other key."""
        canonical = canonical_key(key)
        if canonical is None:
            raise ValueError(f"unsupported key: {key!r}")
        await self.page.keyboard.press(canonical)

    # State --------------------------------------------------------------------------------

    async def storage_state(self) -> dict[str, Any]:
        """Return cookies and localStorage (and IndexedDB) of the context, in the shape
        BrowserHost.acquire(storage_state=...) accepts."""
        state = await self.context.storage_state(indexed_db=True)
        return dict(state)

    # Screencast ---------------------------------------------------------------------------

    async def start_screencast(
        self,
        on_frame: FrameCallback,
        *,
        quality: int = 60,
        every_nth_frame: int = 2,
        max_width: int = 1024,
        max_height: int = 445,
    ) -> None:
        """Stream JPEG frames of the current page to on_frame(jpeg, metadata) until
        stop_screencast. A frame is acknowledged when on_frame has returned for the one
        before it, so a slow consumer slows Chromium down instead of queueing frames. Follows
        the session to a new tab. Call only while someone watches: a screencast costs CPU."""
        await self.stop_screencast()
        self._screencast = _Screencast(
            on_frame,
            {
                "format": "jpeg",
                "quality": quality,
                "maxWidth": max_width,
                "maxHeight": max_height,
                "everyNthFrame": max(1, every_nth_frame),
            },
        )
        await self._screencast.start(self.context, self.page)

    async def stop_screencast(self) -> None:
        """Stop the screencast, if any; idempotent."""
        screencast, self._screencast = self._screencast, None
        if screencast is not None:
            await screencast.stop()

    # Lifecycle ----------------------------------------------------------------------------

    async def close(self) -> None:
        """Close the context and everything in it; idempotent."""
        if self._closed:
            return
        self._closed = True
        await self.stop_screencast()
        for task in list(self._tasks):
            task.cancel()
        try:
            await self.context.close()
        except PlaywrightError:
            logger.debug("context already gone", exc_info=True)
        finally:
            self._on_close(self)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def egress_bytes(self) -> tuple[int, int]:
        """Bytes (sent, received) this session's browser moved through the egress gate."""
        return self._egress.bytes_sent, self._egress.bytes_received

    # Internals ----------------------------------------------------------------------------

    def _spawn(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _watch_page(self, page: Page) -> None:
        page.on("close", self._on_page_closed)

    def _on_new_page(self, page: Page) -> None:
        # A popup or new tab becomes the page the agent and the viewer see.
        self._watch_page(page)
        self._switch_to(page)

    def _on_page_closed(self, page: Page) -> None:
        if page is self.page and not self._closed:
            remaining = [p for p in self.context.pages if not p.is_closed()]
            if remaining:
                self._switch_to(remaining[-1])

    def _switch_to(self, page: Page) -> None:
        self.page = page
        if self._screencast is not None:
            self._spawn(self._screencast.start(self.context, page))


class _Screencast:
    """A CDP screencast of one page at a time."""

    def __init__(self, on_frame: FrameCallback, params: dict[str, Any]) -> None:
        self._on_frame = on_frame
        self._params = params
        self._cdp: CDPSession | None = None
        self._busy = asyncio.Lock()

    async def start(self, context: BrowserContext, page: Page) -> None:
        """Stream `page`; a page already closed has nothing to stream (the session follows
        the next page it opens, if any)."""
        await self._detach()
        try:
            cdp = await context.new_cdp_session(page)
            self._cdp = cdp
            cdp.on("Page.screencastFrame", lambda event: self._on_event(cdp, event))
            await cdp.send("Page.startScreencast", self._params)
        except PlaywrightError:
            if not page.is_closed():
                raise
            self._cdp = None

    async def _on_event(self, cdp: CDPSession, event: dict[str, Any]) -> None:
        # The ack goes first, so Chromium captures the next frame while this one is handed on
        # (acking after the consumer cost a third of the frame rate); a frame that comes while
        # the consumer still has the previous one waits here unacked, so a slow consumer still
        # slows Chromium down instead of queueing frames (at most one waits).
        async with self._busy:
            if cdp is self._cdp:
                try:
                    await cdp.send("Page.screencastFrameAck", {"sessionId": event["sessionId"]})
                except PlaywrightError:
                    pass
            try:
                result = self._on_frame(base64.b64decode(event["data"]), event.get("metadata", {}))
                if inspect.isawaitable(result):
                    await result
            except Exception:
                # The frame consumer is an outer boundary (a websocket); one bad frame must not
                # stop the stream.
                logger.exception("screencast frame consumer failed")

    async def _detach(self) -> None:
        cdp, self._cdp = self._cdp, None
        if cdp is None:
            return
        try:
            await cdp.send("Page.stopScreencast")
            await cdp.detach()
        except PlaywrightError:
            pass  # the page is already gone

    async def stop(self) -> None:
        await self._detach()


class BrowserHost:
    """One Chromium per worker process, many isolated contexts (one per session), a warm pool."""

    def __init__(
        self,
        *,
        chromium_path: str,
        warm_pool_size: int = 2,
        headless: bool = True,
        viewport: tuple[int, int] = (1024, 445),
        egress: EgressSettings | None = None,
    ) -> None:
        self._chromium_path = chromium_path
        self.egress_settings = egress or EgressSettings()
        self.gate = Gate(self.egress_settings)
        self._runtime_dir: Any = None
        self._downloads_dir: Any = None
        self._warm_pool_size = warm_pool_size
        self._headless = headless
        self._viewport = {"width": viewport[0], "height": viewport[1]}
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        self._warm: list[_Slot] = []
        self._sessions: set[SessionBrowser] = set()
        self._refill_task: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        """Start the egress gate, launch Chromium behind it and fill the warm pool.

        Raise `sandbox.SandboxUnavailable` when the egress sandbox is "netns" and this machine
        cannot make a network namespace."""
        self._runtime_dir = sandbox.runtime_dir()
        control = self._runtime_dir / "gate.sock"
        plan = sandbox.prepare(
            directory=self._runtime_dir,
            chromium_path=self._chromium_path,
            control_socket=control,
            mode=self.egress_settings.sandbox,
            user=self.egress_settings.browser_user,
        )
        if plan is not None:
            await self.gate.start(control_socket=control, base_port=plan.base_port, ports=plan.ports)
            executable, args, chromium_sandbox = plan.executable, CHROMIUM_ARGS, True
            self._downloads_dir = sandbox.browser_dir("enigma-downloads-", plan.uid, plan.gid)
        else:
            logger.warning("ENIGMA_EGRESS_SANDBOX=off: Chromium keeps this machine's network")
            await self.gate.start(control_socket=None)
            executable, args = self._chromium_path, [*CHROMIUM_ARGS, *UNSANDBOXED_ARGS]
            chromium_sandbox = os.geteuid() != 0  # Chromium cannot run its sandbox as root
            self._downloads_dir = sandbox.browser_dir("enigma-downloads-", -1, -1)
        self._playwright = await async_playwright().start()
        self._browser = await self._playwright.chromium.launch(
            executable_path=executable,
            headless=self._headless,
            args=args,
            chromium_sandbox=chromium_sandbox,  # Playwright adds --no-sandbox otherwise
            downloads_path=str(self._downloads_dir),  # the browser user writes downloads here
            # Chromium's own traffic (the default context) meets the gate on no session's port.
            proxy={"server": f"http://127.0.0.1:{self.gate.base_port}"},
        )
        self._browser.on("disconnected", lambda _: None if self._stopping else logger.error("chromium disconnected"))
        await self._refill()

    async def stop(self) -> None:
        """Close every session and warm context, then Chromium and the Playwright driver."""
        self._stopping = True
        if self._refill_task is not None:
            self._refill_task.cancel()
            try:
                await self._refill_task
            except asyncio.CancelledError:
                pass
        for session in list(self._sessions):
            await session.close()
        warm, self._warm = self._warm, []
        for slot in warm:
            await slot.context.close()
            self.gate.release(slot.egress.token)
        if self._browser is not None:
            await self._browser.close()
            self._browser = None
        if self._playwright is not None:
            await self._playwright.stop()
            self._playwright = None
        await self.gate.stop()
        for directory in (self._runtime_dir, self._downloads_dir):
            if directory is not None:
                shutil.rmtree(directory, ignore_errors=True)

    async def acquire(
        self,
        *,
        policy: NetworkPolicy,
        storage_state: dict[str, Any] | None = None,
        proxy: dict[str, str] | None = None,
        defer_refill: bool = False,
    ) -> SessionBrowser:
        """Return a session browser on a blank page, guarded by `policy`; `proxy` (Playwright
        style: {"server": "http://h:p" | "socks5://h:p", "username", "password"}) is the upstream
        the gate chains this session's traffic to.

        Warm path (no storage_state): take a pre-made context, which costs no Chromium round
        trip, and refill the pool in the background. Otherwise, or when the pool is empty,
        create a context now (250-350 ms). With `defer_refill`, a pool that still has a warm
        context is refilled when the caller calls `refill()` (after its first page): a context
        made meanwhile competes with that page for Chromium and the CPU (on two cores it made
        the first page of a start ~250 ms slower)."""
        if self._stopping:
            raise RuntimeError("browser host is stopping")
        if storage_state is None and self._warm:
            slot = self._warm.pop()
            if not (defer_refill and self._warm):
                self._schedule_refill()
        else:
            slot = await self._new_slot(storage_state=storage_state)
            self._schedule_refill()
        upstream = Upstream.from_playwright(proxy) if proxy else None
        self.gate.bind(slot.egress.token, policy=policy, upstream=upstream)
        slot.guard.policy = policy
        session = SessionBrowser(slot, on_close=self._session_closed)
        self._sessions.add(session)
        return session

    def _session_closed(self, session: SessionBrowser) -> None:
        self._sessions.discard(session)
        self.gate.release(session._egress.token)

    @property
    def open_contexts(self) -> int:
        """Contexts open in Chromium: warm ones plus those of live sessions."""
        return len(self._browser.contexts) if self._browser is not None else 0

    @property
    def warm_count(self) -> int:
        return len(self._warm)

    async def healthy(self) -> bool:
        """True while Chromium is connected."""
        return self._browser is not None and self._browser.is_connected()

    async def wait_warm(self) -> None:
        """Wait until the pool refill has finished: the pool is full, or a context could not be
        made (tests and benchmarks use it)."""
        while self._refill_task is not None and not self._refill_task.done():
            await asyncio.shield(self._refill_task)

    # Internals ----------------------------------------------------------------------------

    def refill(self) -> None:
        """Make the pool full again in the background (after an acquire with defer_refill)."""
        if not self._stopping:
            self._schedule_refill()

    def _schedule_refill(self) -> None:
        if self._refill_task is None or self._refill_task.done():
            self._refill_task = asyncio.ensure_future(self._refill())

    async def _refill(self) -> None:
        """Make the missing warm contexts in parallel, and go on while sessions take them: a
        context costs a few Chromium round trips (mostly waiting on the renderer's start), so
        one at a time the pool empties whenever starts come faster than ~3 a second."""
        making: set[asyncio.Task[_Slot]] = set()
        try:
            while not self._stopping:
                for _ in range(self._warm_pool_size - len(self._warm) - len(making)):
                    making.add(asyncio.ensure_future(self._new_slot()))
                if not making:
                    return
                # Wake up now and then too: an acquire meanwhile means one more to make.
                done, making = await asyncio.wait(making, timeout=0.05, return_when=asyncio.FIRST_COMPLETED)
                failed = False
                for task in done:
                    try:
                        slot = task.result()
                    except PlaywrightError:
                        logger.exception("could not create a warm browser context")
                        failed = True
                        continue
                    if self._stopping:
                        await slot.context.close()
                        self.gate.release(slot.egress.token)
                    else:
                        self._warm.append(slot)
                if failed:  # no retry loop against a broken browser; the next acquire tries again
                    if making:
                        await asyncio.wait(making)
                        self._warm.extend(t.result() for t in making if t.exception() is None)
                        making = set()
                    return
        finally:
            for task in making:
                task.cancel()

    async def _new_slot(self, *, storage_state: dict[str, Any] | None = None) -> _Slot:
        if self._browser is None:
            raise RuntimeError("browser host is not started")
        egress = await self.gate.new_slot()
        try:
            context = await self._browser.new_context(
                viewport=self._viewport,  # type: ignore[arg-type]
                accept_downloads=True,
                # No service workers: less for a hostile page to keep running (the gate would
                # judge their requests too).
                service_workers="block",
                storage_state=storage_state,  # type: ignore[arg-type]
                # The context's own port at the gate is how the gate knows the session.
                proxy={"server": f"http://127.0.0.1:{egress.port}"},
            )
        except PlaywrightError:
            self.gate.release(egress.token)
            raise
        slot = _Slot(context, None, NetworkGuard(self.gate), egress)  # type: ignore[arg-type]
        slot.page = await context.new_page()
        return slot
