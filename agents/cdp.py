"""Dedicated browsers for sessions driven over raw CDP (issue 16), and the rules of that CDP.

A CDP client can reach every context of its browser, so a CDP session never shares one: each gets
its own Chromium, launched exactly like the worker's shared one (through the egress sandbox
wrapper, `agents.egress.sandbox`: an empty network namespace whose only way out is the gate, as
the unprivileged browser user), with the session's gate port as its browser-wide proxy, so
everything any client makes it fetch is judged by the session's rules. `CdpPool` keeps a few of
them warm (a Chromium start costs about a second; taking a warm one costs nothing).

The agent drives the browser's default context through Playwright's own pipe
(`launch_persistent_context`): that context is the one a customer's `connect_over_cdp` finds as
`browser.contexts[0]`, with the agent's page, cookies and storage. Chromium also listens for
DevTools clients on a port inside its namespace (`--remote-debugging-port=0`, loopback of the
namespace only; pages cannot reach it: loopback goes through the proxy, which refuses it).
`DedicatedBrowser.open_devtools` connects to that port from the worker by entering the namespace
for one `connect()` in a short-lived thread, and returns a websocket that is one more DevTools
client of the browser.

`judge` is what a customer's CDP client may send: it refuses (as a CDP error with the same id)
what would escape the platform, pins download behaviour to the session's folder, and refuses
input while a human has taken over. No Django here.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from playwright.async_api import BrowserContext, Page
from playwright.async_api import Error as PlaywrightError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from agents.browser import CHROMIUM_ARGS, UNSANDBOXED_ARGS, BrowserHost, SessionBrowser, _Slot
from agents.egress import sandbox
from agents.egress.gate import SessionEgress, Upstream
from agents.netguard import NetworkGuard, NetworkPolicy

__all__ = ["CdpPool", "DedicatedBrowser", "Verdict", "judge"]

logger = logging.getLogger(__name__)

CLONE_NEWNET = 0x40000000
DEVTOOLS_ARGS = ["--remote-debugging-port=0", "--disable-features=WebUIOmniboxPopup"]
_libc = ctypes.CDLL(None, use_errno=True)

# Methods a customer's client may never send, and why (the CDP error's message).
REFUSED_METHODS = {
    "Browser.crash": "would crash the session's browser",
    "Browser.crashGpuProcess": "would crash the session's browser",
    "Browser.executeBrowserCommand": "runs browser commands outside the page",
    "Target.setRemoteLocations": "connects to other browsers",
    "Target.exposeDevToolsProtocol": "would hand the protocol to a page",
    "Target.sendMessageToTarget": "non-flat sessions are not relayed; use flatten: true",
    "Target.openDevTools": "opens DevTools windows",
    "Page.setDownloadBehavior": "downloads are pinned to the session's folder; use Browser.setDownloadBehavior",
    "DOM.setFileInputFiles": "reads files of the browser host; set file contents instead "
    "(Playwright set_input_files with buffers)",
}
REFUSED_DOMAINS = {
    "Extensions": "loads extensions",
    "PWA": "installs web apps on the browser host",
    "Tethering": "binds ports on the browser host",
    "Cast": "reaches devices on the browser host's network",
    "DeviceAccess": "reaches devices of the browser host",
}
# Options of Target.createBrowserContext that would change how the browser reaches the network.
PROXY_OPTIONS = ("proxyServer", "proxyBypassList", "originsWithUniversalNetworkAccess")


@dataclass(frozen=True)
class Verdict:
    """`forward` (possibly rewritten) to the browser, or `reply` to the client instead; `close`
    means the client asked to close the browser (Browser.close): end the session."""

    forward: str | None = None
    reply: str | None = None
    close: bool = False


def _error(message_id: Any, session_id: Any, text: str, code: int = -32000) -> str:
    body: dict[str, Any] = {"id": message_id, "error": {"code": code, "message": text}}
    if session_id:
        body["sessionId"] = session_id
    return json.dumps(body)


def judge(raw: str, *, human_control: bool, downloads_dir: str) -> Verdict:
    """What to do with one message a customer's client sent (see the module docstring)."""
    try:
        message = json.loads(raw)
    except ValueError:
        return Verdict(reply=_error(None, None, "Message must be JSON", -32700))
    if not isinstance(message, dict) or not isinstance(message.get("method"), str):
        return Verdict(
            reply=_error(
                message.get("id") if isinstance(message, dict) else None, None, "Message must be a CDP command", -32600
            )
        )
    method: str = message["method"]
    message_id, session_id = message.get("id"), message.get("sessionId")
    raw_params = message.get("params")
    params: dict[str, Any] = raw_params if isinstance(raw_params, dict) else {}
    domain = method.split(".", 1)[0]

    def refuse(why: str) -> Verdict:
        return Verdict(reply=_error(message_id, session_id, f"{method} is not allowed here: {why}"))

    if method in REFUSED_METHODS:
        return refuse(REFUSED_METHODS[method])
    if domain in REFUSED_DOMAINS:
        return refuse(REFUSED_DOMAINS[domain])
    if method == "Browser.close":
        return Verdict(reply=json.dumps({"id": message_id, "result": {}}), close=True)
    if method == "Target.createBrowserContext" and any(params.get(k) for k in PROXY_OPTIONS):
        return refuse("the session's network goes through its own proxy; it cannot be changed")
    if method == "Input.dispatchDragEvent" and (params.get("data") or {}).get("files"):
        return refuse("reads files of the browser host")
    if domain == "Input" and human_control:
        return refuse("a human has taken over the session (releaseControl gives it back)")
    if method == "Browser.setDownloadBehavior":
        pinned = dict(params)
        if pinned.get("behavior") != "deny":
            # Named by GUID in the session's folder, where the session keeps each download.
            pinned["behavior"] = "allowAndName"
            pinned["downloadPath"] = downloads_dir
        else:
            pinned.pop("downloadPath", None)
        return Verdict(forward=json.dumps({**message, "params": pinned}))
    return Verdict(forward=raw)


WEBUI_PREFIXES = ("chrome://", "chrome-error://")
_TARGET_EVENTS = (
    "Target.attachedToTarget",
    "Target.targetCreated",
    "Target.targetInfoChanged",
    "Target.targetDestroyed",
    "Target.detachedFromTarget",
    "Target.targetCrashed",
)


def hide_event(raw: str, hidden: set[str]) -> bool:
    """True for a browser event about one of new headless's own WebUI pages (a preloaded
    chrome://omnibox-popup.top-chrome page it keeps in the default context, shown as a
    chrome-error page: the policy blocks chrome://), which a client must not take for one of
    the session's tabs. `hidden` remembers their target ids for their later events."""
    if not raw.startswith('{"method":"Target.'):
        return False
    message = json.loads(raw)
    if message.get("method") not in _TARGET_EVENTS:
        return False
    params = message.get("params") or {}
    info = params.get("targetInfo") or {}
    target_id = info.get("targetId") or params.get("targetId") or ""
    if (
        info.get("type") == "page"
        and str(info.get("url", "")).startswith(WEBUI_PREFIXES)
        and message["method"] in ("Target.attachedToTarget", "Target.targetCreated")
    ):
        hidden.add(target_id)
        if params.get("sessionId"):
            hidden.add(params["sessionId"])
    return target_id in hidden or params.get("sessionId") in hidden


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def _connect_in_namespace(pid: int, port: int) -> Any:
    """A TCP socket connected to 127.0.0.1:`port` in process `pid`'s network namespace. Runs in
    its own short-lived thread: setns changes only the calling thread, and that thread goes."""
    import socket

    result: dict[str, Any] = {}

    def run() -> None:
        own = os.open("/proc/self/ns/net", os.O_RDONLY)
        target = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
        try:
            _setns(target)
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            finally:
                _setns(own)
            sock.setblocking(False)
            result["sock"] = sock
        except OSError as exc:
            result["error"] = exc
        finally:
            os.close(own)
            os.close(target)

    thread = threading.Thread(target=run, name="enigma-cdp-connect", daemon=True)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["sock"]


def _browser_pid(user_data_dir: str) -> int | None:
    """The Chromium browser process (not a renderer or helper) using `user_data_dir`."""
    marker = f"--user-data-dir={user_data_dir}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                args = handle.read().split(b"\0")
        except OSError:
            continue
        if marker in args and not any(a.startswith(b"--type=") for a in args) and b"nslaunch.py" not in b" ".join(args):
            return int(entry)
    return None


class DedicatedSessionBrowser(SessionBrowser):
    """A SessionBrowser on a dedicated browser's default context, where new headless also keeps
    its own WebUI pages (chrome://omnibox-popup.top-chrome/...): those never become the page
    the agent, the live view and the recording follow."""

    def _on_new_page(self, page: Page) -> None:
        if page.url.startswith(WEBUI_PREFIXES):
            return
        super()._on_new_page(page)


class DedicatedBrowser:
    """One Chromium for one CDP session: its default context and page, its gate port, its
    folders, and where its DevTools server listens."""

    def __init__(
        self, *, context: BrowserContext, egress: SessionEgress, user_data_dir: Path, downloads_dir: Path, netns: bool
    ) -> None:
        self.context = context
        self.page: Page = context.pages[0] if context.pages else None  # type: ignore[assignment]
        self.egress = egress
        self.user_data_dir = user_data_dir
        self.downloads_dir = downloads_dir
        self.netns = netns
        self.devtools_port = 0
        self.devtools_path = ""
        self.pid: int | None = None
        self.session: SessionBrowser | None = None

    async def _locate(self, timeout_s: float = 15.0) -> None:
        """Read Chromium's DevTools port and browser path (DevToolsActivePort) and its pid."""
        active = self.user_data_dir / "DevToolsActivePort"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            try:
                port, path = active.read_text().split()[:2]
                self.devtools_port, self.devtools_path = int(port), path
                break
            except (OSError, ValueError):
                if loop.time() > deadline:
                    raise RuntimeError("Chromium did not start its DevTools server") from None
                await asyncio.sleep(0.02)
        if self.netns:
            self.pid = await loop.run_in_executor(None, _browser_pid, str(self.user_data_dir))
            if self.pid is None:
                raise RuntimeError("could not find the dedicated Chromium's process")

    async def open_devtools(self) -> ClientConnection:
        """A new DevTools client connection to this browser (its own CDP sessions)."""
        uri = f"ws://127.0.0.1:{self.devtools_port}{self.devtools_path}"
        if self.netns:
            assert self.pid is not None
            sock = await asyncio.get_running_loop().run_in_executor(
                None, _connect_in_namespace, self.pid, self.devtools_port
            )
            return await connect(uri, sock=sock, max_size=None, compression=None, ping_interval=None, open_timeout=10)
        return await connect(uri, max_size=None, compression=None, ping_interval=None, open_timeout=10)

    async def close(self) -> None:
        try:
            await self.context.close()
        except PlaywrightError:
            logger.debug("dedicated browser already gone", exc_info=True)
        for directory in (self.user_data_dir, self.downloads_dir):
            await asyncio.get_running_loop().run_in_executor(None, shutil.rmtree, directory, True)


class CdpPool:
    """Warm dedicated browsers of one worker, next to its shared `BrowserHost` (same Playwright
    driver, same gate, same sandbox wrapper)."""

    def __init__(self, host: BrowserHost, *, warm_pool_size: int = 2) -> None:
        self.host = host
        self._size = warm_pool_size
        self._warm: list[DedicatedBrowser] = []
        self._making: set[asyncio.Task[DedicatedBrowser]] = set()
        self._live: set[DedicatedBrowser] = set()
        self._stopping = False
        self._refill_task: asyncio.Task[None] | None = None

    @property
    def warm_count(self) -> int:
        return len(self._warm)

    async def start(self) -> None:
        self._schedule_refill()

    async def stop(self) -> None:
        self._stopping = True
        if self._refill_task is not None:
            self._refill_task.cancel()
        for task in list(self._making):
            task.cancel()
        for browser in [*self._warm, *self._live]:
            await browser.close()
            self.host.gate.release(browser.egress.token)
        self._warm.clear()
        self._live.clear()

    async def wait_warm(self) -> None:
        while self._refill_task is not None and not self._refill_task.done():
            await asyncio.shield(self._refill_task)

    async def acquire(
        self,
        *,
        policy: NetworkPolicy,
        storage_state: dict[str, Any] | None = None,
        proxy: dict[str, str] | None = None,
        on_close: Callable[[DedicatedBrowser], None] | None = None,
    ) -> tuple[SessionBrowser, DedicatedBrowser]:
        """A dedicated browser bound to `policy` (and the customer's upstream `proxy`), with
        `storage_state` (cookies, localStorage) applied; warm when one is ready."""
        if self._stopping:
            raise RuntimeError("browser host is stopping")
        browser = self._warm.pop() if self._warm else await self._launch()
        self._schedule_refill()
        self._live.add(browser)
        gate = self.host.gate
        gate.bind(browser.egress.token, policy=policy, upstream=Upstream.from_playwright(proxy) if proxy else None)
        if storage_state:
            await _apply_storage_state(browser.context, storage_state)
        guard = NetworkGuard(gate)
        guard.policy = policy
        slot = _Slot(browser.context, browser.page, guard, browser.egress)

        def closed(session: SessionBrowser) -> None:
            self._live.discard(browser)
            gate.release(browser.egress.token)
            asyncio.ensure_future(browser.close())
            if on_close is not None:
                on_close(browser)

        session = DedicatedSessionBrowser(slot, on_close=closed)
        browser.session = session
        return session, browser

    def _schedule_refill(self) -> None:
        if not self._stopping and (self._refill_task is None or self._refill_task.done()):
            self._refill_task = asyncio.ensure_future(self._refill())

    async def _refill(self) -> None:
        while not self._stopping:
            for _ in range(self._size - len(self._warm) - len(self._making)):
                self._making.add(asyncio.ensure_future(self._launch()))
            if not self._making:
                return
            done, self._making = await asyncio.wait(self._making, timeout=0.05, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task.cancelled():
                    continue
                error = task.exception()
                if error is not None:
                    logger.error("could not launch a dedicated CDP browser: %s", error)
                    return  # the next acquire tries again
                browser = task.result()
                if self._stopping:
                    await browser.close()
                    self.host.gate.release(browser.egress.token)
                else:
                    self._warm.append(browser)

    async def _launch(self) -> DedicatedBrowser:
        host = self.host
        playwright = host._playwright
        if playwright is None:
            raise RuntimeError("browser host is not started")
        settings = host.egress_settings
        netns = settings.sandbox == "netns"
        uid, gid = sandbox.browser_user(settings.browser_user) if netns else (-1, -1)
        egress = await host.gate.new_slot()
        user_data_dir = Path(tempfile.mkdtemp(prefix="enigma-cdp-profile-"))
        downloads_dir = sandbox.browser_dir("enigma-cdp-downloads-", uid, gid)
        if netns:
            executable, args, chromium_sandbox = str(host._runtime_dir / "chromium"), [*CHROMIUM_ARGS], True
        else:
            executable, args = host._chromium_path, [*CHROMIUM_ARGS, *UNSANDBOXED_ARGS]
            chromium_sandbox = os.geteuid() != 0
        try:
            context = await playwright.chromium.launch_persistent_context(
                str(user_data_dir),
                executable_path=executable,
                headless=host._headless,
                args=[*args, *DEVTOOLS_ARGS],
                chromium_sandbox=chromium_sandbox,
                downloads_path=str(downloads_dir),
                accept_downloads=True,
                viewport=host._viewport,  # type: ignore[arg-type]
                # The session's own gate port is the whole browser's proxy (Playwright adds
                # <-loopback>, so loopback goes through it too: the DevTools port included).
                proxy={"server": f"http://127.0.0.1:{egress.port}"},
            )
        except PlaywrightError:
            host.gate.release(egress.token)
            shutil.rmtree(user_data_dir, ignore_errors=True)
            shutil.rmtree(downloads_dir, ignore_errors=True)
            raise
        browser = DedicatedBrowser(
            context=context, egress=egress, user_data_dir=user_data_dir, downloads_dir=downloads_dir, netns=netns
        )
        try:
            if browser.page is None:
                browser.page = await context.new_page()
            await browser._locate()
        except (PlaywrightError, RuntimeError, OSError, ConnectionClosed):
            await browser.close()
            host.gate.release(egress.token)
            raise
        return browser


async def _apply_storage_state(context: BrowserContext, state: dict[str, Any]) -> None:
    """Cookies, and each origin's localStorage on its first load (a persistent context takes no
    storage_state at creation)."""
    cookies = state.get("cookies") or []
    if cookies:
        await context.add_cookies(cookies)
    origins = {
        o["origin"]: {e["name"]: e["value"] for e in o.get("localStorage", [])}
        for o in state.get("origins") or []
        if o.get("localStorage")
    }
    if origins:
        await context.add_init_script(
            "(() => { const all = " + json.dumps(origins) + "; const items = all[location.origin];"
            " if (!items || sessionStorage.getItem('__enigma_restored')) return;"
            " for (const [k, v] of Object.entries(items)) if (localStorage.getItem(k) === null) localStorage.setItem(k, v);"
            " sessionStorage.setItem('__enigma_restored', '1'); })()"
        )
