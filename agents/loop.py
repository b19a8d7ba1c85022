"""The agent loop: observe the page, ask the provider for a turn, run its tools, repeat.

`run_agent` is the entry point the session runner calls. It owns the limits (steps, input and
output tokens), the guardrails (ask_human, purchases, logins without secrets), secret handling
(placeholders in, scrubbed text out) and structured output validation.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page

from agents import actions as tools
from agents.actions import (
    ASK_HUMAN_TOOL,
    BROWSER_TOOLS,
    UPLOAD_TOOL,
    BrowserActions,
    describe_target,
    done_tool,
)
from agents.observe import Observation, observe
from agents.providers import (
    Provider,
    ProviderSession,
    ToolCall,
    ToolResult,
    TurnRequest,
)
from agents.providers.base import ModelTurn
from agents.secrets import SecretVault, placeholder
from agents.structured import (
    StructuredOutputError,
    format_result,
    output_instructions,
    result_schema,
)
from agents.types import AgentCallbacks, AgentError, AgentResult, TaskSpec

SYSTEM_PROMPT = """\
You are Enigma, an agent that completes tasks for a user in a real web browser.
Each turn you receive an observation of the current page: its URL and title, the interactive \
elements with refs in brackets such as [e12], and the visible text. Act with the tools and \
address elements by the refs of the latest observation.
Rules:
- Think in one or two short sentences, then call a tool. Several calls in one turn are fine \
when they do not depend on each other (filling a form).
- Never guess credentials. When the observation lists secrets for the site, type their \
placeholders exactly as shown (e.g. {{secret:password}}); the browser fills in the real value. \
When a login is needed and no secret is listed, call ask_human.
- Ask the human (ask_human) before any purchase, payment, subscription or irreversible account \
change, and for CAPTCHAs, one-time codes and ambiguous instructions.
- A navigation blocked by the network policy will stay blocked: do not retry it; find another \
way or report that the site is blocked.
- When the task is complete, call done with the result."""

MAX_MODEL_OUTPUT_TOKENS = 4096
# Observations older than this many steps are replaced by a stub, so a long task's context
# stops growing with the pages it has seen.
KEEP_OBSERVATIONS = 2

_PURCHASE_RE = re.compile(
    r"\b(buy|purchase|pay|payment|check ?out|place (?:your |the )?order|complete (?:the )?order|"
    r"confirm (?:order|purchase|payment)|subscribe)\b",
    re.IGNORECASE,
)
_APPROVAL_RE = re.compile(
    r"^\W*(yes|y|ok|okay|sure|approve[d]?|confirm(?:ed)?|proceed|go ahead|continue|resume|do it)\b",
    re.IGNORECASE,
)


async def run_agent(
    page: Page,
    task: TaskSpec,
    callbacks: AgentCallbacks,
    *,
    provider: Provider,
    gate: ActionGate | None = None,
) -> AgentResult:
    """Run `task` on `page` and return its result.

    Raise AgentError when the task fails (limits, model errors, invalid structured output,
    unsupported offline instructions); let TaskStopped from the callbacks propagate. `gate`,
    when given, is asked before every browser action (automation policies).
    """
    run = _AgentRun(page, task, callbacks, provider, gate)
    return await run.execute()


def _element_fields(args: dict[str, Any], observation: Observation) -> dict[str, str] | None:
    """The role and accessible name of the element a tool call acts on (for policy rules)."""
    element = observation.element(str(args["ref"])) if args.get("ref") else None
    if element is None:
        return None
    return {"role": element.role, "name": element.name or element.placeholder or element.attr_name}


# Asked before every browser action with {"name", "args", "url", "target", "element", "pageText"};
# `element` is {"role", "name"} of the element acted on, or None. Returns
# None to let it run, or the refusal the model reads back (the action is then not executed). A
# gate that needs a human decision asks through the task's callbacks.ask_human (a guardrail).
ActionGate = Callable[[dict[str, Any]], Awaitable[str | None]]


class _Reporter:
    """The callbacks, with every outgoing string scrubbed of secret values."""

    def __init__(self, callbacks: AgentCallbacks, vault: SecretVault) -> None:
        self.callbacks = callbacks
        self.vault = vault

    async def event(self, kind: str, payload: dict[str, Any]) -> None:
        scrubbed = self.vault.scrub_obj(payload)
        assert isinstance(scrubbed, dict)
        await self.callbacks.event(kind, scrubbed)

    async def ask_human(self, question: str) -> str:
        return await self.callbacks.ask_human(self.vault.scrub(question))


@dataclass
class _Budget:
    """Token use against the task's limits."""

    max_input: int
    max_output: int
    input_used: int = 0
    output_used: int = 0
    last_input: int = 0

    def check_before_call(self) -> int:
        """Return max_tokens for the next call, or raise AgentError when a limit is reached."""
        # Context only grows, so the next call costs at least what the last one did: stop
        # before spending tokens the limit does not allow.
        if self.input_used + self.last_input > self.max_input:
            raise self.input_error()
        remaining = self.max_output - self.output_used
        if remaining <= 0:
            raise AgentError(
                "OUTPUT_TOKEN_LIMIT",
                f"Output token limit of {self.max_output} reached before the task was done",
                {"maxOutputTokens": self.max_output, "outputTokens": self.output_used},
            )
        return min(remaining, MAX_MODEL_OUTPUT_TOKENS)

    def add(self, turn: ModelTurn) -> None:
        self.input_used += turn.input_tokens
        self.output_used += turn.output_tokens
        self.last_input = turn.input_tokens
        if self.input_used > self.max_input:
            raise self.input_error()

    def input_error(self) -> AgentError:
        return AgentError(
            "INPUT_TOKEN_LIMIT",
            f"Input token limit of {self.max_input} reached before the task was done",
            {"maxInputTokens": self.max_input, "inputTokens": self.input_used},
        )


@dataclass
class _History:
    """The conversation in Messages API format, with old observations trimmed."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    observation_blocks: list[tuple[int, int]] = field(default_factory=list)

    def add_user(self, blocks: list[dict[str, Any]], observation_indexes: list[int]) -> None:
        self.messages.append({"role": "user", "content": blocks})
        position = len(self.messages) - 1
        self.observation_blocks.extend((position, index) for index in observation_indexes)
        self._trim()

    def add_assistant(self, content: list[dict[str, Any]]) -> None:
        self.messages.append(
            {
                "role": "assistant",
                "content": content or [{"type": "text", "text": "..."}],
            }
        )

    def _trim(self) -> None:
        positions = sorted({position for position, _ in self.observation_blocks})
        old = set(positions[:-KEEP_OBSERVATIONS])
        keep: list[tuple[int, int]] = []
        for position, index in self.observation_blocks:
            if position in old:
                self.messages[position]["content"][index] = {
                    "type": "text",
                    "text": "(older page observation omitted)",
                }
            else:
                keep.append((position, index))
        self.observation_blocks = keep


class _AgentRun:
    def __init__(
        self, page: Page, task: TaskSpec, callbacks: AgentCallbacks, provider: Provider, gate: ActionGate | None
    ) -> None:
        self.page = page
        self.gate = gate
        self.task = task
        self.callbacks = callbacks
        self.provider = provider
        self.vault = SecretVault(task.secrets)
        self.reporter = _Reporter(callbacks, self.vault)
        self.budget = _Budget(task.max_input_tokens, task.max_output_tokens)
        self.history = _History()
        # The role is stable for the whole task, so it stays inside the cached prompt prefix.
        self.system_prompt = SYSTEM_PROMPT + (
            f"\n\nOperator instructions for this session (follow them):\n{task.role.strip()}"
            if task.role.strip()
            else ""
        )
        upload = [UPLOAD_TOOL] if task.files else []
        self.tools = [*BROWSER_TOOLS, *upload, ASK_HUMAN_TOOL, done_tool(result_schema(task))]
        self.repair_used = False
        self.human_answers: list[str] = []

    async def execute(self) -> AgentResult:
        session = self.provider.open(self.task)
        actions = BrowserActions(self.page, self.vault, self.task.files)
        try:
            await self.reporter.event("response_update", {"message": "Starting task... Browsing the web now."})
            return await self._loop(session, actions)
        finally:
            actions.close()
            await session.aclose()

    async def _loop(self, session: ProviderSession, actions: BrowserActions) -> AgentResult:
        results: list[ToolResult] = []
        pending_text = ""
        for step in range(1, self.task.max_steps + 1):
            observation = await self._observe()
            await self._add_user_turn(observation, results, pending_text, first=step == 1)
            await self.callbacks.checkpoint()
            max_tokens = self.budget.check_before_call()
            turn = await session.next_turn(
                TurnRequest(
                    system=self.system_prompt,
                    tools=self.tools,
                    messages=self.history.messages,
                    max_tokens=max_tokens,
                    observation=observation,
                    results=results,
                    secret_fields=self.vault.field_names_for(observation.url),
                )
            )
            await self.callbacks.usage(turn.input_tokens, turn.output_tokens)
            self.budget.add(turn)
            self.history.add_assistant(turn.content)
            if turn.thought:
                await self.reporter.event("agent", {"content": turn.thought})
            results, pending_text = [], ""
            if not turn.calls:
                if turn.stop_reason == "max_tokens":
                    pending_text = "Your reply was cut off by the output limit. Be brief and call a tool."
                    continue
                # A reply without tools is the model's final answer.
                outcome = self._finish(turn.thought, step)
                if isinstance(outcome, AgentResult):
                    return outcome
                pending_text = outcome
                continue
            for index, call in enumerate(turn.calls):
                if call.name == tools.DONE:
                    outcome = self._finish(call.input.get("result"), step)
                    if isinstance(outcome, AgentResult):
                        return outcome
                    results.append(
                        ToolResult(
                            call,
                            outcome,
                            is_error=True,
                            code="INVALID_STRUCTURED_OUTPUT",
                        )
                    )
                    results.extend(ToolResult(c, "Skipped.", is_error=True) for c in turn.calls[index + 1 :])
                    break
                results.append(await self._run_tool(call, observation, actions))
        raise AgentError(
            "MAX_STEPS_EXCEEDED",
            f"The task was not finished within {self.task.max_steps} steps",
            {"maxSteps": self.task.max_steps},
        )

    async def _observe(self) -> Observation:
        observation = await observe(self.page)
        if self.task.files:
            names = ", ".join(os.path.basename(path) for path in self.task.files)
            observation.notes.append(f"Files you can attach to file inputs with upload_file: {names}")
        fields = self.vault.field_names_for(observation.url)
        if fields:
            observation.notes.append(
                "Secrets for this site (type the placeholder as is): " + ", ".join(placeholder(f) for f in fields)
            )
        elif any(el.type == "password" for el in observation.elements):
            observation.notes.append(
                "This page asks for a password and no secret matches this site: call ask_human if you need to log in."
            )
        return observation

    async def _add_user_turn(
        self,
        observation: Observation,
        results: list[ToolResult],
        pending_text: str,
        *,
        first: bool,
    ) -> None:
        blocks: list[dict[str, Any]] = []
        for result in results:
            blocks.append(
                {
                    "type": "tool_result",
                    "tool_use_id": result.call.id,
                    "content": result.text,
                    "is_error": result.is_error,
                }
            )
        if first:
            blocks.append(
                {
                    "type": "text",
                    "text": f"Task: {self.task.prompt}\n\n{output_instructions(self.task)}",
                }
            )
        if pending_text:
            blocks.append({"type": "text", "text": pending_text})
        observation_indexes = [len(blocks)]
        blocks.append(
            {
                "type": "text",
                "text": "Current page:\n" + self.vault.scrub(observation.render()),
            }
        )
        if self.provider.screenshots:
            image = await self._screenshot()
            if image:
                observation_indexes.append(len(blocks))
                blocks.append(image)
        self.history.add_user(blocks, observation_indexes)

    async def _screenshot(self) -> dict[str, Any] | None:
        try:
            data = await self.page.screenshot(type="jpeg", quality=50)
        except PlaywrightError:
            return None
        return {
            "type": "image",
            "source": {
                "type": "base64",
                "media_type": "image/jpeg",
                "data": base64.b64encode(data).decode(),
            },
        }

    def _finish(self, result: Any, step: int) -> AgentResult | str:
        """Return the AgentResult for `result`, or the repair request for the model.

        A result that does not fit the output type gets one repair attempt; the second failure
        raises AgentError INVALID_STRUCTURED_OUTPUT.
        """
        try:
            message = format_result(self.task, "" if result is None else result)
        except StructuredOutputError as exc:
            if self.repair_used:
                raise AgentError(
                    "INVALID_STRUCTURED_OUTPUT",
                    f"The result does not match the requested {self.task.output_type} output: {exc}",
                    {"errors": str(exc)},
                ) from exc
            self.repair_used = True
            return f"The result does not match the required output: {exc}. Call done again with a corrected result."
        return AgentResult(
            message=self.vault.scrub(message),
            input_tokens=self.budget.input_used,
            output_tokens=self.budget.output_used,
            extra={
                "steps": step,
                "provider": self.provider.name,
                "humanAnswers": list(self.human_answers),
            },
        )

    async def _run_tool(self, call: ToolCall, observation: Observation, actions: BrowserActions) -> ToolResult:
        await self.callbacks.checkpoint()
        if call.name == tools.ASK_HUMAN:
            question = str(call.input.get("question") or "The agent needs your input to continue.")
            answer = await self.reporter.ask_human(question)
            self.human_answers.append(answer)
            return ToolResult(call, f"The human answered: {self.vault.scrub(answer)}")
        target = describe_target(call.name, call.input, observation)
        if self.gate is not None:
            refusal = await self.gate(
                {
                    "name": call.name,
                    "args": dict(call.input),
                    "url": observation.url,
                    "target": target,
                    "element": _element_fields(call.input, observation),
                    "pageText": observation.text,
                }
            )
            if refusal is not None:
                await self.reporter.event("response_update", {"message": refusal})
                return ToolResult(call, refusal, is_error=True, code="POLICY_BLOCKED")
        declined = await self._purchase_guardrail(call, target, observation)
        if declined is not None:
            return ToolResult(call, declined, is_error=True, code="DECLINED")
        await self.reporter.event("action", {"name": call.name, "target": target})
        outcome = await actions.run(call.name, call.input, observation)
        if outcome.blocked_url:
            host = urlsplit(outcome.blocked_url).hostname or outcome.blocked_url
            await self.reporter.event(
                "response_update",
                {"message": f"Navigation to {host} was blocked by the network policy."},
            )
        return ToolResult(call, self.vault.scrub(outcome.text), outcome.is_error, outcome.code)

    async def _purchase_guardrail(self, call: ToolCall, target: str, observation: Observation) -> str | None:
        """Ask the human before a click that looks like a purchase; return a refusal or None."""
        if call.name not in (tools.CLICK, tools.PRESS) or not _PURCHASE_RE.search(target):
            return None
        if call.name == tools.PRESS and str(call.input.get("key", "")).lower() != "enter":
            return None
        host = urlsplit(observation.url).hostname or observation.url
        answer = await self.reporter.ask_human(
            f"The next step is to activate {target} on {host}, which looks like a purchase or payment. "
            "Reply yes to proceed, or say what to do instead."
        )
        self.human_answers.append(answer)
        if _APPROVAL_RE.match(answer):
            return None
        return f"The human did not approve this step. They said: {answer}"
