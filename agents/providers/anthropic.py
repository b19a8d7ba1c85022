"""Claude through the official `anthropic` SDK, with tool use and prompt caching.

Its settings come from agents.config.AgentSettings (through `get_provider`) or the constructor.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import random
from typing import Any

import anthropic

from agents.config import DEFAULT_ANTHROPIC_MODEL
from agents.providers.base import (
    ModelTurn,
    Provider,
    ProviderSession,
    ToolCall,
    TurnRequest,
)
from agents.types import AgentError, TaskSpec

logger = logging.getLogger(__name__)

MAX_BACKOFF_S = 30.0

# Rate limits, overload (529), other 5xx and connection failures are worth another try; a 400
# or 401 will fail the same way again.
_RETRYABLE = (
    anthropic.RateLimitError,
    anthropic.InternalServerError,
    anthropic.APIConnectionError,
)


class AnthropicProvider(Provider):
    """Claude with tool use. Retries transient API errors itself, with a configurable backoff."""

    name = "anthropic"

    def __init__(
        self,
        *,
        model: str = DEFAULT_ANTHROPIC_MODEL,
        api_key: str = "",
        base_url: str | None = None,
        max_retries: int = 4,
        retry_base_s: float = 1.0,
        screenshots: bool = False,
    ) -> None:
        self.model = model
        self.api_key = api_key
        self.base_url = base_url
        self.max_retries = max_retries
        self.retry_base_s = retry_base_s
        self.screenshots = screenshots

    def open(self, task: TaskSpec) -> AnthropicSession:
        if not self.api_key:
            raise AgentError("MODEL_UNAVAILABLE", "ANTHROPIC_API_KEY is not set")
        # Our own loop retries, so the SDK's must not multiply the attempts (and the wait).
        client = anthropic.AsyncAnthropic(api_key=self.api_key, base_url=self.base_url, max_retries=0)
        return AnthropicSession(self, client)


class AnthropicSession(ProviderSession):
    def __init__(self, provider: AnthropicProvider, client: anthropic.AsyncAnthropic) -> None:
        self.provider = provider
        self.client = client

    async def aclose(self) -> None:
        await self.client.close()

    async def next_turn(self, request: TurnRequest) -> ModelTurn:
        # The system prompt and the tools are identical on every step: cache them.
        system = [
            {
                "type": "text",
                "text": request.system,
                "cache_control": {"type": "ephemeral"},
            }
        ]
        tools = copy.deepcopy(request.tools)
        if tools:
            tools[-1]["cache_control"] = {"type": "ephemeral"}
        message = await self._create(
            model=self.provider.model,
            max_tokens=request.max_tokens,
            system=system,
            tools=tools,
            messages=request.messages,
        )
        thoughts: list[str] = []
        calls: list[ToolCall] = []
        content: list[dict[str, Any]] = []
        for block in message.content:
            if block.type == "text":
                thoughts.append(block.text)
                content.append({"type": "text", "text": block.text})
            elif block.type == "tool_use":
                arguments = block.input if isinstance(block.input, dict) else {}
                calls.append(ToolCall(id=block.id, name=block.name, input=dict(arguments)))
                content.append(
                    {
                        "type": "tool_use",
                        "id": block.id,
                        "name": block.name,
                        "input": arguments,
                    }
                )
        usage = message.usage
        input_tokens = (
            usage.input_tokens + (usage.cache_creation_input_tokens or 0) + (usage.cache_read_input_tokens or 0)
        )
        return ModelTurn(
            thought="\n".join(t for t in thoughts if t.strip()),
            calls=calls,
            input_tokens=input_tokens,
            output_tokens=usage.output_tokens,
            stop_reason=str(message.stop_reason or ""),
            content=content,
        )

    async def _create(self, **params: Any) -> Any:
        """Call messages.create, retrying transient errors; raise AgentError when they persist."""
        attempts = self.provider.max_retries + 1
        for attempt in range(attempts):
            try:
                return await self.client.messages.create(**params)
            except _RETRYABLE as exc:
                if attempt + 1 >= attempts:
                    raise AgentError(
                        "MODEL_UNAVAILABLE",
                        f"The model is unavailable after {attempts} attempts: {_describe(exc)}",
                        {
                            "status": getattr(exc, "status_code", None),
                            "attempts": attempts,
                        },
                    ) from exc
                delay = _backoff(self.provider.retry_base_s, attempt, exc)
                logger.warning(
                    "Anthropic API error (%s); retrying in %.2f s",
                    _describe(exc),
                    delay,
                )
                await asyncio.sleep(delay)
            except anthropic.APIStatusError as exc:
                raise AgentError(
                    "MODEL_ERROR",
                    f"The model rejected the request: {_describe(exc)}",
                    {"status": exc.status_code},
                ) from exc
        raise AssertionError("unreachable")


def _backoff(base_s: float, attempt: int, exc: Exception) -> float:
    """Exponential backoff with jitter; a server's retry-after wins when it asks for longer."""
    delay: float = min(base_s * (2**attempt), MAX_BACKOFF_S) * random.uniform(0.8, 1.2)
    response = getattr(exc, "response", None)
    retry_after = response.headers.get("retry-after") if response is not None else None
    if retry_after:
        try:
            delay = max(delay, min(float(retry_after), MAX_BACKOFF_S))
        except ValueError:
            pass
    return delay


def _describe(exc: Exception) -> str:
    status = getattr(exc, "status_code", None)
    return f"{type(exc).__name__} {status}" if status else type(exc).__name__
