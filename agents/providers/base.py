"""The provider interface: messages and tools in; thoughts, tool calls and token usage out.

Messages use the Anthropic Messages format (a list of {"role", "content": [blocks]}) because it
is the richest one we speak; a provider for another API converts at its edge. A provider opens
one ProviderSession per task, so a scripted provider can keep per-task state.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from agents.observe import Observation
from agents.types import TaskSpec


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    input: dict[str, Any]


@dataclass(frozen=True)
class ToolResult:
    """The outcome of a ToolCall as reported back to the model."""

    call: ToolCall
    text: str
    is_error: bool = False
    code: str = ""


@dataclass
class ModelTurn:
    """One model reply: its reasoning text, the tools it calls and what it cost."""

    thought: str
    calls: list[ToolCall]
    input_tokens: int = 0
    output_tokens: int = 0
    stop_reason: str = "tool_use"
    # The assistant message content to append to the history, in Messages API block format.
    content: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class TurnRequest:
    """Everything a provider may use to choose the next turn.

    `messages` is the conversation so far (the model's view, already scrubbed of secrets);
    `observation`, `results` and `secret_fields` are the same facts in structured form for
    providers that do not read prose.
    """

    system: str
    tools: list[dict[str, Any]]
    messages: list[dict[str, Any]]
    max_tokens: int
    observation: Observation
    results: list[ToolResult] = field(default_factory=list)
    secret_fields: list[str] = field(default_factory=list)


class ProviderSession(ABC):
    """A conversation with the model about one task."""

    @abstractmethod
    async def next_turn(self, request: TurnRequest) -> ModelTurn:
        """Return the model's next turn; raise AgentError when the model cannot be reached."""

    async def aclose(self) -> None:
        """Release connections held by the session."""
        return


class Provider(ABC):
    """A source of model turns (a real model or a deterministic script)."""

    name: str = "provider"
    # Send a screenshot with each page observation (for a model that reads images).
    screenshots: bool = False

    @abstractmethod
    def open(self, task: TaskSpec) -> ProviderSession:
        """Start a session for `task`; raise AgentError if the task cannot be handled."""
