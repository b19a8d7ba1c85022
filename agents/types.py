"""The boundary between the session runner (sessions_app) and the agent (agents/).

The runner gives the agent a Playwright page, a TaskSpec and an AgentCallbacks object; the agent
drives the page and returns an AgentResult or raises AgentError. Everything here is plain data:
no Django, no HTTP, no billing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Protocol

# What a page can put in a string that no UTF-8 encoder or PostgreSQL text column takes: lone
# UTF-16 surrogates (`document.title = "\ud800"`) and NUL.
_UNSTORABLE_RE = re.compile("[\ud800-\udfff\x00]")


def clean_text(text: str) -> str:
    """Return `text` with lone surrogates and NUL replaced by U+FFFD, so it can be stored and sent."""
    if text.isascii() and "\x00" not in text:
        return text
    return _UNSTORABLE_RE.sub("\ufffd", text)


def clean_obj(obj: Any) -> Any:
    """`clean_text` on every string of a JSON-like structure (dict keys included)."""
    if isinstance(obj, str):
        return clean_text(obj)
    if isinstance(obj, dict):
        return {clean_text(k) if isinstance(k, str) else k: clean_obj(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [clean_obj(v) for v in obj]
    return obj


@dataclass(frozen=True)
class SecretEntry:
    """Credentials for sites whose host matches `match` (exact host, `*.domain` or `all`)."""

    match: str
    fields: dict[str, str]


@dataclass(frozen=True)
class TaskSpec:
    prompt: str
    max_input_tokens: int = 100_000
    max_output_tokens: int = 100_000
    output_type: str = "text"  # "text" | "structured_json" | "structured_csv"
    output_schema: Any = None  # JSON Schema dict, or list of CSV column names
    secrets: tuple[SecretEntry, ...] = ()
    files: tuple[str, ...] = ()  # local paths the agent may attach to file inputs
    max_steps: int = 50
    # Operator instructions (an automation policy's "LLM role"), added to the system prompt.
    role: str = ""


@dataclass
class AgentResult:
    message: str  # text, a JSON string (structured_json) or CSV text (structured_csv)
    input_tokens: int = 0
    output_tokens: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class AgentError(Exception):
    """The task failed. `code` is an UPPER_SNAKE code from api.md §1.12 or our own."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}


class TaskStopped(Exception):
    """The user stopped the task (state stop, guardrail stop, session end). Not a failure."""


class AgentCallbacks(Protocol):
    async def event(self, kind: str, payload: dict[str, Any]) -> None:
        """Report an event: kind is "agent" ({"content": str}), "action" ({"name", "target"}) or
        "response_update" ({"message": str}). Payloads never carry secret values."""

    async def usage(self, input_tokens: int, output_tokens: int) -> None:
        """Report tokens used by one model call (deltas, not totals)."""

    async def checkpoint(self) -> None:
        """Called between actions. Waits while the task is paused or under human control;
        raises TaskStopped when the task was stopped."""

    async def ask_human(self, question: str) -> str:
        """Raise a guardrail and wait for the answer; raises TaskStopped on a `stop` answer."""
