"""Request normalisation at the edge (spec README §1): three generations in, one shape out.

G1 flat fields (`taskDetails`, `startingUrl`, ...), G2 `initialTask{taskDetails, startingPoint}`
and G3 `task{prompt, startingUrl}` all become a `SessionInput` holding a `TaskInput`. The shapes
are the serializers of `sessions_app.serializers`; unknown fields are rejected with 400 naming
the field, and every error names its parameter (`enigma_site.errors.validation_error`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from enigma_site.errors import ApiError, InvalidParameter
from enigma_site.parsers import check_value
from enigma_site.serializers import validated

from . import serializers
from .serializers import (  # noqa: F401 (the edge's limits, used by the runner and the viewer)
    CHROME_HEIGHT,
    MAX_DURATION_MAX,
    TOKENS_MAX,
    VIEW_HEIGHT,
    VIEW_WIDTH,
)


class InvalidTaskDetails(ApiError):
    code = "INVALID_TASK_DETAILS"


@dataclass
class TaskInput:
    prompt: str = ""
    starting_url: str | None = None
    max_duration_ms: int = MAX_DURATION_MAX
    max_input_tokens: int = TOKENS_MAX
    max_output_tokens: int = TOKENS_MAX
    avoid_domains: list[str] = field(default_factory=list)
    terminate_on_completion: bool = False
    output_type: str = "text"
    output_schema: Any = None
    secrets: list[dict[str, Any]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    webhook: dict[str, Any] | None = None
    given: set[str] = field(default_factory=set)  # which fields the client set

    @classmethod
    def from_validated(cls, data: dict[str, Any]) -> TaskInput:
        """From TaskSerializer's validated data."""
        return cls(
            prompt=data["prompt"].strip(),
            starting_url=data["startingUrl"],
            max_duration_ms=data["maxDuration"],
            max_input_tokens=data["maxInputTokens"],
            max_output_tokens=data["maxOutputTokens"],
            avoid_domains=data["avoidDomains"],
            terminate_on_completion=data["terminateOnCompletion"],
            output_type=data["outputType"],
            output_schema=data["outputSchema"],
            secrets=data["secrets"],
            files=data["files"],
            webhook=data["webhook"],
            given=data["given"],
        )


@dataclass
class SessionInput:
    mode: str = "default"
    environment_id: str | None = None
    policy_id: str | None = None
    proxy: dict[str, Any] | None = None
    reach_out_mode: str = "guardrail_only"
    recording: bool = True  # false: no recording of this session (recordings/)
    cdp: bool = False  # true: its own browser, reachable over raw CDP at connectUrl (sessions_app.cdp)
    task: TaskInput = field(default_factory=TaskInput)
    task_prefix: str = ""  # "", "initialTask." or "task." for error messages


def _text_check(task: dict[str, Any], prefix: str) -> None:
    """The task text of run-task and newTask: not blank (its presence the serializer checks)."""
    if not task["prompt"].strip():
        name = f"{prefix}{task['textKey']}"
        raise InvalidTaskDetails(f"{name} cannot be empty", details={"parameter": name})


def parse_session_body(body: Any, *, require_task: bool) -> SessionInput:
    """Parse a start-session (require_task=False) or run-task (require_task=True) body."""
    if not isinstance(body, dict):
        raise ApiError("Request body must be a JSON object", code="INVALID_JSON")
    check_value(body)  # MCP tool arguments do not come through the REST edge
    shape = serializers.RunTaskSerializer if require_task else serializers.StartSessionSerializer
    data = validated(shape(data=body))
    task = TaskInput.from_validated(data["task"])
    if require_task:
        _text_check(data["task"], data["taskPrefix"])
        task.terminate_on_completion = True
    return SessionInput(
        mode=data["mode"],
        environment_id=data["environmentId"],
        policy_id=data["policyId"],
        proxy=data["proxy"],
        reach_out_mode=data["reachOutMode"],
        recording=data["recording"],
        cdp=data["cdp"],
        task=task,
        task_prefix=data["taskPrefix"],
    )


@dataclass
class Message:
    action_type: str
    task: TaskInput | None = None
    new_state: str | None = None
    interaction: dict[str, Any] | None = None
    answer: str | None = None


def parse_message(message: Any) -> Message:
    """Validate a send-message `message` (also a socket emit) into a Message."""
    if not isinstance(message, dict):
        raise InvalidParameter("message", "Invalid parameter 'message': must be an object")
    check_value(message, "message")  # socket emits and MCP tool arguments skip the REST edge
    action_type, data = serializers.message_validated(message)
    if action_type == "newTask":
        _text_check(data, "message.")
        return Message(action_type="newTask", task=TaskInput.from_validated(data))
    if action_type == "state":
        return Message(action_type="state", new_state=data["newState"])
    if action_type == "interaction":
        return Message(action_type="interaction", interaction=data["action"])
    return Message(action_type="guardrail", new_state=data["newState"], answer=data["answer"])
