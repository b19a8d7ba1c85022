"""The agent's tools: their schemas (given to the model) and their execution on the page.

Elements are addressed by the refs of the latest observation (`data-enigma-ref`). Every
execution returns an ActionOutcome whose text is what the model reads back; failures are
outcomes too (is_error), so a bad ref or a blocked navigation never crashes the task.
"""

from __future__ import annotations

import asyncio
import json
import mimetypes
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import FilePayload, Locator, Page, Request, Response
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

from agents.observe import REF_ATTR, Observation
from agents.secrets import PLACEHOLDER_RE, SecretVault

NAVIGATE = "navigate"
CLICK = "click_element"
TYPE = "type_text"
SELECT = "select_option"
PRESS = "press_key"
SCROLL = "scroll"
BACK = "go_back"
WAIT = "wait"
EXTRACT = "extract"
DONE = "done"
ASK_HUMAN = "ask_human"
UPLOAD = "upload_file"

EXTRACT_KINDS = ("text", "links", "tables", "headings", "title", "url")

ACTION_TIMEOUT_MS = 5_000
NAVIGATION_TIMEOUT_MS = 30_000
MAX_WAIT_S = 30.0
MAX_EXTRACT_CHARS = 6_000

# Chromium's messages for a request the network guard refused (route.abort, a blocking proxy
# or an extension). A navigation that fails this way is reported as "blocked", not as an error.
_BLOCKED_MARKERS = (
    "ERR_TUNNEL_CONNECTION_FAILED",  # the egress gate refused an HTTPS or WebSocket target
    "ERR_BLOCKED_BY_CLIENT",
    "ERR_BLOCKED_BY_ADMINISTRATOR",
    "ERR_BLOCKED_BY_RESPONSE",
    "ERR_ACCESS_DENIED",
    "ERR_ABORTED",
    "ERR_FAILED",
)


def is_blocked_error(message: str) -> bool:
    """Return True if a Playwright/Chromium error message means the request was blocked."""
    return any(marker in message for marker in _BLOCKED_MARKERS)


_REF = {"type": "string", "description": "Element ref from the observation, e.g. e12"}

BROWSER_TOOLS: list[dict[str, Any]] = [
    {
        "name": NAVIGATE,
        "description": "Open a URL in the current tab.",
        "input_schema": {
            "type": "object",
            "properties": {"url": {"type": "string"}},
            "required": ["url"],
        },
    },
    {
        "name": CLICK,
        "description": "Click an element by ref (preferred) or, failing that, by its visible text.",
        "input_schema": {
            "type": "object",
            "properties": {"ref": _REF, "text": {"type": "string"}},
        },
    },
    {
        "name": TYPE,
        "description": (
            "Replace the content of a text field with text; submit=true presses Enter after. "
            "Use secret placeholders such as {{secret:password}} verbatim for credentials."
        ),
        "input_schema": {
            "type": "object",
            "properties": {
                "ref": _REF,
                "text": {"type": "string"},
                "submit": {"type": "boolean", "default": False},
            },
            "required": ["ref", "text"],
        },
    },
    {
        "name": SELECT,
        "description": "Choose an option of a select element by its label or value.",
        "input_schema": {
            "type": "object",
            "properties": {"ref": _REF, "option": {"type": "string"}},
            "required": ["ref", "option"],
        },
    },
    {
        "name": PRESS,
        "description": "Press a key (Enter, Tab, Escape, ArrowDown, Control+A ...), on ref if given.",
        "input_schema": {
            "type": "object",
            "properties": {"key": {"type": "string"}, "ref": _REF},
            "required": ["key"],
        },
    },
    {
        "name": SCROLL,
        "description": "Scroll the page up or down by a number of screens (default 1).",
        "input_schema": {
            "type": "object",
            "properties": {
                "direction": {"type": "string", "enum": ["up", "down"]},
                "screens": {"type": "number", "default": 1},
            },
            "required": ["direction"],
        },
    },
    {
        "name": BACK,
        "description": "Go back to the previous page.",
        "input_schema": {"type": "object", "properties": {}},
    },
    {
        "name": WAIT,
        "description": "Wait some seconds (max 30), or until `text` appears on the page.",
        "input_schema": {
            "type": "object",
            "properties": {"seconds": {"type": "number"}, "text": {"type": "string"}},
        },
    },
    {
        "name": EXTRACT,
        "description": (
            "Read data from the page: text, links, tables, headings, title or url; "
            "optionally only inside the element `ref`."
        ),
        "input_schema": {
            "type": "object",
            "properties": {
                "kind": {"type": "string", "enum": list(EXTRACT_KINDS)},
                "ref": _REF,
            },
            "required": ["kind"],
        },
    },
]

UPLOAD_TOOL: dict[str, Any] = {
    "name": UPLOAD,
    "description": "Attach one of the task's files (by file name) to a file input, given by ref.",
    "input_schema": {
        "type": "object",
        "properties": {"ref": _REF, "file": {"type": "string", "description": "File name"}},
        "required": ["ref", "file"],
    },
}

ASK_HUMAN_TOOL: dict[str, Any] = {
    "name": ASK_HUMAN,
    "description": (
        "Ask the human a question and wait for the answer. Use it for missing credentials, "
        "purchases or payments, CAPTCHAs, 2FA codes and ambiguous instructions."
    ),
    "input_schema": {
        "type": "object",
        "properties": {"question": {"type": "string"}},
        "required": ["question"],
    },
}


def done_tool(result_schema: dict[str, Any]) -> dict[str, Any]:
    """Return the `done` tool whose `result` follows `result_schema`."""
    return {
        "name": DONE,
        "description": "Finish the task and give the final result.",
        "input_schema": {
            "type": "object",
            "properties": {"result": result_schema},
            "required": ["result"],
        },
    }


@dataclass
class ActionOutcome:
    """The result of one tool call, as the model will read it."""

    text: str
    is_error: bool = False
    code: str = ""  # AgentError code a scripted agent should fail with, e.g. ELEMENT_NOT_FOUND
    blocked_url: str = ""


_EXTRACT_JS = """
({kind, root, maxChars}) => {
  const norm = (s) => (s || '').replace(/\\s+/g, ' ').trim();
  const base = root ? document.querySelector(root) : document.body;
  if (!base) return null;
  const shown = (el) => el.checkVisibility({visibilityProperty: true});
  if (kind === 'text') return base.innerText.slice(0, maxChars);
  if (kind === 'headings') {
    return [...base.querySelectorAll('h1, h2, h3, h4, h5, h6')].filter(shown)
      .map((h) => h.tagName.toLowerCase() + ': ' + norm(h.innerText).replace(/\\s*¶$/, ''))
      .join('\\n');
  }
  if (kind === 'links') {
    return [...base.querySelectorAll('a[href]')].filter(shown).slice(0, 200)
      .map((a) => (norm(a.innerText) || norm(a.getAttribute('aria-label')) || '(no text)') + ' -> ' + a.href)
      .join('\\n');
  }
  if (kind === 'tables') {
    return [...base.querySelectorAll('table')].filter(shown).slice(0, 10).map((t, i) =>
      'Table ' + (i + 1) + ':\\n' + [...t.rows].slice(0, 100).map((r) =>
        [...r.cells].map((c) => norm(c.innerText)).join(' | ')).join('\\n')).join('\\n\\n');
  }
  return null;
}
"""


class BrowserActions:
    """Executes browser tools on one page; tracks navigations the network guard blocks."""

    def __init__(self, page: Page, vault: SecretVault, files: tuple[str, ...] = ()) -> None:
        self.page = page
        self.vault = vault
        # The task's files by name: the agent may attach only these.
        self.files = {os.path.basename(path): path for path in files}
        self._blocked: list[str] = []
        page.on("requestfailed", self._on_request_failed)
        page.on("response", self._on_response)

    def close(self) -> None:
        """Stop listening to the page."""
        self.page.remove_listener("requestfailed", self._on_request_failed)
        self.page.remove_listener("response", self._on_response)

    def _on_response(self, response: Response) -> None:
        # The egress gate refuses a plain-HTTP request (a redirect hop too) with this 403.
        request = response.request
        if response.status != 403 or not response.headers.get("x-enigma-blocked"):
            return
        if request.is_navigation_request() and request.frame == self.page.main_frame:
            self._blocked.append(response.url)

    def _on_request_failed(self, request: Request) -> None:
        failure = request.failure or ""
        # ERR_ABORTED also means "superseded by another navigation", so only the explicit
        # block codes count here; page.goto reports its own aborts.
        blocked = "BLOCKED" in failure or "ERR_TUNNEL_CONNECTION_FAILED" in failure
        if request.is_navigation_request() and request.frame == self.page.main_frame and blocked:
            self._blocked.append(request.url)

    def _locator(self, ref: str) -> Locator:
        return self.page.locator(f'[{REF_ATTR}="{ref}"]')

    async def run(self, name: str, args: dict[str, Any], observation: Observation) -> ActionOutcome:
        """Execute the tool `name` with `args`; never raises for page-level failures."""
        self._blocked.clear()
        try:
            outcome = await self._dispatch(name, args, observation)
        except PlaywrightTimeoutError as exc:
            outcome = ActionOutcome(f"Timed out: {_first_line(exc)}", is_error=True, code="ACTION_TIMEOUT")
        except PlaywrightError as exc:
            outcome = ActionOutcome(f"Failed: {_first_line(exc)}", is_error=True, code="ACTION_FAILED")
        if self._blocked and not outcome.blocked_url:
            url = self._blocked[-1]
            outcome = ActionOutcome(
                f"{outcome.text}\nNavigation to {url} was blocked by the network policy.",
                is_error=True,
                code="NAVIGATION_BLOCKED",
                blocked_url=url,
            )
        return outcome

    async def _dispatch(self, name: str, args: dict[str, Any], observation: Observation) -> ActionOutcome:
        if name == NAVIGATE:
            return await self.navigate(str(args.get("url", "")))
        if name == CLICK:
            return await self.click(args.get("ref"), args.get("text"))
        if name == TYPE:
            return await self.type_text(
                str(args.get("ref", "")),
                str(args.get("text", "")),
                bool(args.get("submit")),
            )
        if name == SELECT:
            return await self.select_option(str(args.get("ref", "")), str(args.get("option", "")))
        if name == PRESS:
            return await self.press_key(str(args.get("key", "")), args.get("ref"))
        if name == SCROLL:
            return await self.scroll(str(args.get("direction", "down")), float(args.get("screens") or 1))
        if name == BACK:
            return await self.go_back()
        if name == WAIT:
            return await self.wait(args.get("seconds"), args.get("text"))
        if name == EXTRACT:
            return await self.extract(str(args.get("kind", "text")), args.get("ref"))
        if name == UPLOAD:
            return await self.upload_file(str(args.get("ref", "")), str(args.get("file", "")))
        return ActionOutcome(f"Unknown tool {name!r}.", is_error=True, code="UNKNOWN_TOOL")

    async def _settle(self) -> None:
        """Give a click or key press the chance to start a navigation, then wait for the DOM."""
        await asyncio.sleep(0.15)
        try:
            await self.page.wait_for_load_state("domcontentloaded", timeout=NAVIGATION_TIMEOUT_MS)
        except PlaywrightError:
            pass

    async def navigate(self, url: str) -> ActionOutcome:
        if not url:
            return ActionOutcome("No URL given.", is_error=True, code="INVALID_PARAMETER")
        try:
            response = await self.page.goto(url, wait_until="domcontentloaded", timeout=NAVIGATION_TIMEOUT_MS)
        except PlaywrightTimeoutError:
            return ActionOutcome(
                f"Navigation timeout after {NAVIGATION_TIMEOUT_MS // 1000} seconds: {url}",
                is_error=True,
                code="NAVIGATION_TIMEOUT",
            )
        except PlaywrightError as exc:
            message = _first_line(exc)
            if is_blocked_error(message):
                return ActionOutcome(
                    f"Navigation to {url} was blocked by the network policy ({message}).",
                    is_error=True,
                    code="NAVIGATION_BLOCKED",
                    blocked_url=url,
                )
            return ActionOutcome(f"Navigation failed: {message}", is_error=True, code="NAVIGATION_FAILED")
        reason = response.headers.get("x-enigma-blocked") if response is not None and response.status == 403 else None
        if reason:
            return ActionOutcome(
                f"Navigation to {response.url} was blocked by the network policy ({reason}).",  # type: ignore[union-attr]
                is_error=True,
                code="NAVIGATION_BLOCKED",
                blocked_url=response.url,  # type: ignore[union-attr]
            )
        return ActionOutcome(f"Opened {self.page.url}")

    async def _resolve(self, ref: str) -> Locator | ActionOutcome:
        if not ref:
            return ActionOutcome("No ref given.", is_error=True, code="INVALID_PARAMETER")
        locator = self._locator(ref)
        if await locator.count() == 0:
            return ActionOutcome(
                f"No element with ref {ref} on the page any more; use a ref from the latest observation.",
                is_error=True,
                code="ELEMENT_NOT_FOUND",
            )
        return locator.first

    async def click(self, ref: Any, text: Any) -> ActionOutcome:
        if ref:
            target = await self._resolve(str(ref))
            if isinstance(target, ActionOutcome):
                return target
        elif text:
            target = self.page.get_by_text(str(text), exact=False).first
            if await self.page.get_by_text(str(text), exact=False).count() == 0:
                return ActionOutcome(
                    f"No element with text {text!r}.",
                    is_error=True,
                    code="ELEMENT_NOT_FOUND",
                )
        else:
            return ActionOutcome(
                "Give a ref or a text to click.",
                is_error=True,
                code="INVALID_PARAMETER",
            )
        await target.click(timeout=ACTION_TIMEOUT_MS)
        await self._settle()
        return ActionOutcome(f"Clicked. Now at {self.page.url}")

    async def type_text(self, ref: str, text: str, submit: bool) -> ActionOutcome:
        target = await self._resolve(ref)
        if isinstance(target, ActionOutcome):
            return target
        try:
            value = self.vault.substitute(text, self.page.url)
        except KeyError as exc:
            return ActionOutcome(
                f"No secret {{{{secret:{exc.args[0]}}}}} for this site.",
                is_error=True,
                code="SECRET_NOT_FOUND",
            )
        await target.fill(value, timeout=ACTION_TIMEOUT_MS)
        if submit:
            await target.press("Enter", timeout=ACTION_TIMEOUT_MS)
            await self._settle()
        # The model gets back the text it sent (placeholders, never the values).
        typed = "a secret" if PLACEHOLDER_RE.search(text) else json.dumps(text)
        return ActionOutcome(f"Typed {typed}{' and pressed Enter' if submit else ''}.")

    async def select_option(self, ref: str, option: str) -> ActionOutcome:
        target = await self._resolve(ref)
        if isinstance(target, ActionOutcome):
            return target
        try:
            await target.select_option(label=option, timeout=ACTION_TIMEOUT_MS)
        except PlaywrightError:
            await target.select_option(value=option, timeout=ACTION_TIMEOUT_MS)
        return ActionOutcome(f"Selected {option!r}.")

    async def press_key(self, key: str, ref: Any) -> ActionOutcome:
        if not key:
            return ActionOutcome("No key given.", is_error=True, code="INVALID_PARAMETER")
        if ref:
            target = await self._resolve(str(ref))
            if isinstance(target, ActionOutcome):
                return target
            await target.press(key, timeout=ACTION_TIMEOUT_MS)
        else:
            await self.page.keyboard.press(key)
        await self._settle()
        return ActionOutcome(f"Pressed {key}.")

    async def upload_file(self, ref: str, file: str) -> ActionOutcome:
        path = self.files.get(os.path.basename(file))
        if path is None:
            available = ", ".join(sorted(self.files)) or "none"
            return ActionOutcome(
                f"No task file named {file!r}; available: {available}.", is_error=True, code="FILE_NOT_FOUND"
            )
        target = await self._resolve(ref)
        if isinstance(target, ActionOutcome):
            return target
        # The file's bytes, not its path: Chromium runs as another user, in its own namespaces,
        # and cannot (and should not) read the worker's storage.
        name = os.path.basename(path)
        payload: FilePayload = {
            "name": name,
            "mimeType": mimetypes.guess_type(name)[0] or "application/octet-stream",
            "buffer": await asyncio.to_thread(Path(path).read_bytes),
        }
        await target.set_input_files(payload, timeout=ACTION_TIMEOUT_MS)
        return ActionOutcome(f"Attached {name}.")

    async def scroll(self, direction: str, screens: float) -> ActionOutcome:
        sign = -1 if direction == "up" else 1
        screens = max(0.1, min(screens, 10.0))
        position = await self.page.evaluate(
            "(dy) => { window.scrollBy(0, dy * window.innerHeight * 0.85); return Math.round(window.scrollY); }",
            sign * screens,
        )
        return ActionOutcome(f"Scrolled {direction}; now at y={position}.")

    async def go_back(self) -> ActionOutcome:
        response = await self.page.go_back(wait_until="domcontentloaded", timeout=NAVIGATION_TIMEOUT_MS)
        if response is None and self.page.url in ("", "about:blank"):
            return ActionOutcome("No previous page.", is_error=True)
        return ActionOutcome(f"Went back to {self.page.url}")

    async def wait(self, seconds: Any, text: Any) -> ActionOutcome:
        limit = max(0.0, min(float(seconds or (10 if text else 1)), MAX_WAIT_S))
        if text:
            try:
                await self.page.get_by_text(str(text)).first.wait_for(timeout=limit * 1000)
            except PlaywrightTimeoutError:
                return ActionOutcome(
                    f"{text!r} did not appear within {limit:g} s.",
                    is_error=True,
                    code="ELEMENT_NOT_FOUND",
                )
            return ActionOutcome(f"{text!r} appeared.")
        await asyncio.sleep(limit)
        return ActionOutcome(f"Waited {limit:g} s.")

    async def extract(self, kind: str, ref: Any) -> ActionOutcome:
        if kind not in EXTRACT_KINDS:
            return ActionOutcome(
                f"Unknown kind {kind!r}; use one of {', '.join(EXTRACT_KINDS)}.",
                is_error=True,
            )
        if kind == "title":
            return ActionOutcome(await self.page.title())
        if kind == "url":
            return ActionOutcome(self.page.url)
        root = f'[{REF_ATTR}="{ref}"]' if ref else None
        data = await self.page.evaluate(_EXTRACT_JS, {"kind": kind, "root": root, "maxChars": MAX_EXTRACT_CHARS})
        if data is None:
            return ActionOutcome(f"No element with ref {ref}.", is_error=True, code="ELEMENT_NOT_FOUND")
        text = str(data)
        if len(text) > MAX_EXTRACT_CHARS:
            text = text[:MAX_EXTRACT_CHARS] + "\n... (truncated)"
        return ActionOutcome(text or f"(no {kind} found)")


def _first_line(exc: BaseException) -> str:
    """Playwright messages carry a call log after the first line; the model needs only the gist."""
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def describe_target(name: str, args: dict[str, Any], observation: Observation) -> str:
    """Return the human description of what a tool call acts on (the action event's target)."""
    ref = args.get("ref")
    element = observation.element(str(ref)) if ref else None
    element_text = element.describe() if element else (f"element {ref}" if ref else "")
    if name == NAVIGATE:
        return str(args.get("url", ""))
    if name == CLICK:
        return element_text or f'text "{args.get("text", "")}"'
    if name == TYPE:
        return element_text
    if name == SELECT:
        return f"{element_text}: {args.get('option', '')}"
    if name == PRESS:
        return f"{args.get('key', '')} on {element_text}" if element_text else str(args.get("key", ""))
    if name == SCROLL:
        return str(args.get("direction", "down"))
    if name == WAIT:
        return f'until "{args["text"]}" appears' if args.get("text") else f"{args.get('seconds', 1)} s"
    if name == EXTRACT:
        return f"{args.get('kind', 'text')}" + (f" in {element_text}" if element_text else "")
    if name == BACK:
        return "previous page"
    if name == UPLOAD:
        return f"{args.get('file', '')} into {element_text}"
    return element_text
