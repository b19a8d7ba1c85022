"""The OpenAI chat-completions request and response shapes (api.md §7), translated at the edge.

A request becomes one task in a new session that ends after it (terminateOnCompletion):

* the task is the **last user message**;
* every other message (system/developer instructions first, then the earlier turns, labelled by
  role) is prepended as context, so a client that sends its whole history loses nothing (a model
  reads it; the offline provider follows only the `Task:` section);
* `max_tokens` (or `max_completion_tokens`) is the task's `maxOutputTokens` (default 2000, as
  documented; values above the platform maximum are capped there);
* `reach_out_mode` is the session's `reachOutMode`; `temperature`, `top_p`, `user`, `seed`,
  `stop`, the penalties and `n: 1` are accepted and ignored (the agent is not sampled text).

The resulting body goes through `parse_session_body`, the same validation as run-task.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agents.providers import offline
from billing.money import micros_to_usd
from enigma_site.errors import ApiError, InvalidParameter, MissingField
from sessions_app.models import BrowserSession, Task
from sessions_app.schema import TOKENS_MAX, SessionInput, parse_session_body
from sessions_app.selectors import task_cost_micros

MODEL_ID = "enigma-browser-1"
MODEL_CREATED = 1704067200
DEFAULT_MAX_TOKENS = 2000
ROLES = ("system", "developer", "user", "assistant")
IGNORED = {
    "temperature",
    "top_p",
    "user",
    "seed",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "metadata",
    "store",
    "logit_bias",
    "service_tier",
}
KNOWN = {
    "model",
    "messages",
    "stream",
    "stream_options",
    "max_tokens",
    "max_completion_tokens",
    "reach_out_mode",
    "n",
    "logprobs",
    "response_format",
} | IGNORED
UNSUPPORTED = {
    "tools",
    "tool_choice",
    "functions",
    "function_call",
    "parallel_tool_calls",
    "audio",
    "modalities",
    "prediction",
    "top_logprobs",
    "web_search_options",
}
# Where an error of the underlying task validation points, in this endpoint's names.
_PARAM_NAMES = {"task.prompt": "messages", "task.maxOutputTokens": "max_tokens", "reachOutMode": "reach_out_mode"}


class ModelNotFound(ApiError):
    status_code = 404
    code = "model_not_found"


@dataclass
class ChatRequest:
    spec: SessionInput
    stream: bool
    include_usage: bool


def openai_param(parameter: str | None) -> str | None:
    return _PARAM_NAMES.get(parameter or "", parameter)


def _content_text(content: Any, name: str) -> str:
    """The text of a message: a string, or a list of text parts (no images: text only)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for index, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise InvalidParameter(f"{name}[{index}]", "Only text content parts are supported")
            parts.append(part["text"])
        return "\n".join(parts)
    if content is None:
        raise MissingField(name)
    raise InvalidParameter(name, f"Invalid parameter '{name}': must be a string or an array of text parts")


def build_prompt(messages: Any) -> str:
    """The task text: the last user message, preceded by the other messages as context."""
    if messages is None:
        raise MissingField("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidParameter("messages", "Invalid parameter 'messages': must be a non-empty array")
    turns: list[tuple[str, str]] = []
    for index, message in enumerate(messages):
        name = f"messages[{index}]"
        if not isinstance(message, dict):
            raise InvalidParameter(name, f"Invalid parameter '{name}': must be an object")
        role = message.get("role")
        if role is None:
            raise MissingField(f"{name}.role")
        if role not in ROLES:
            raise InvalidParameter(
                f"{name}.role",
                f"Invalid parameter '{name}.role': must be one of "
                + ", ".join(ROLES)
                + " (tool and function messages are not supported)",
            )
        turns.append((role, _content_text(message.get("content"), f"{name}.content").strip()))
    last_user = max((i for i, (role, _) in enumerate(turns) if role == "user"), default=None)
    if last_user is None:
        raise InvalidParameter("messages", "Invalid parameter 'messages': at least one user message is required")
    task = turns[last_user][1]
    if not task:
        raise InvalidParameter(f"messages[{last_user}].content", "The last user message must not be empty")
    instructions = [text for role, text in turns if role in ("system", "developer") and text]
    history = [
        f"{role.capitalize()}: {text}"
        for i, (role, text) in enumerate(turns)
        if i != last_user and role in ("user", "assistant") and text
    ]
    if not instructions and not history:
        return task
    # The offline provider follows the Task section alone (offline.task_section).
    instructions_heading, history_heading = offline.CONTEXT_HEADINGS
    sections = []
    if instructions:
        sections.append(instructions_heading + "\n\n".join(instructions))
    if history:
        sections.append(history_heading + "\n".join(history))
    sections.append(offline.TASK_HEADING + task)
    return "\n\n".join(sections)


def _max_tokens(body: dict[str, Any]) -> int:
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    value = body.get(key)
    if value is None:
        return DEFAULT_MAX_TOKENS
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidParameter(key, f"Invalid parameter '{key}': must be an integer of at least 0")
    return min(value, TOKENS_MAX)


def parse_chat_request(body: Any) -> ChatRequest:
    """Validate a chat-completions body into the session it starts; raise ApiError naming the param."""
    if not isinstance(body, dict):
        raise ApiError("Request body must be a JSON object", code="INVALID_JSON")
    for key in body:
        if key in UNSUPPORTED:
            raise InvalidParameter(key, f"'{key}' is not supported: the model is a browser agent without tools")
        if key not in KNOWN:
            raise InvalidParameter(key, f"Unrecognized request argument supplied: {key}")
    model = body.get("model")
    if model is None:
        raise MissingField("model")
    if model != MODEL_ID:
        raise ModelNotFound(f"The model '{model}' does not exist", details={"parameter": "model"})
    if body.get("n", 1) not in (1, None):
        raise InvalidParameter("n", "Invalid parameter 'n': only 1 is supported")
    if body.get("logprobs"):
        raise InvalidParameter("logprobs", "Invalid parameter 'logprobs': not supported")
    response_format = body.get("response_format")
    if response_format is not None and (not isinstance(response_format, dict) or response_format.get("type") != "text"):
        raise InvalidParameter("response_format", 'Invalid parameter \'response_format\': only {"type": "text"}')
    stream = body.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise InvalidParameter("stream", "Invalid parameter 'stream': must be a boolean")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise InvalidParameter("stream_options", "Invalid parameter 'stream_options': must be an object")
    session_body: dict[str, Any] = {
        "task": {"prompt": build_prompt(body.get("messages")), "maxOutputTokens": _max_tokens(body)}
    }
    if body.get("reach_out_mode") is not None:
        session_body["reachOutMode"] = body["reach_out_mode"]
    spec = parse_session_body(session_body, require_task=True)  # also sets terminateOnCompletion
    return ChatRequest(spec=spec, stream=bool(stream), include_usage=bool(options.get("include_usage")))


def completion_id(task: Task) -> str:
    return f"chatcmpl-{task.pk}"


def usage(task: Task) -> dict[str, int]:
    return {
        "prompt_tokens": task.input_tokens,
        "completion_tokens": task.output_tokens,
        "total_tokens": task.input_tokens + task.output_tokens,
    }


def extension(session: BrowserSession | str, task: Task) -> dict[str, Any]:
    """The `enigma` object: which session and task served the request, and its cost in USD."""
    session_id = session if isinstance(session, str) else session.pk
    return {"sessionId": session_id, "taskId": task.pk, "cost": micros_to_usd(task_cost_micros(task))}


def completion_body(task: Task, *, created: int) -> dict[str, Any]:
    return {
        "id": completion_id(task),
        "object": "chat.completion",
        "created": created,
        "model": MODEL_ID,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": task.result_message},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": usage(task),
        "enigma": extension(task.session_id, task),
    }


def chunk(
    task: Task, *, created: int, delta: dict[str, Any], finish_reason: str | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "id": completion_id(task),
        "object": "chat.completion.chunk",
        "created": created,
        "model": MODEL_ID,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
        **extra,
    }


def models_body() -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"id": MODEL_ID, "object": "model", "created": MODEL_CREATED, "owned_by": "enigma"}],
    }


def progress_text(payload: dict[str, Any], task_id: str) -> str | None:
    """One line of streamed progress for a session event of this task, or None to skip it."""
    if payload.get("taskId") != task_id:
        return None
    kind = payload.get("type")
    if kind == "agent":
        text = str(payload.get("content") or "").strip()
    elif kind == "action":
        data = payload.get("data") or {}
        text = " ".join(str(part) for part in ("→", data.get("name"), data.get("target") or "") if part).strip()
    elif kind == "response_update":
        text = str((payload.get("data") or {}).get("message") or "").strip()
    else:
        return None
    return f"{text}\n" if text else None


def is_end_event(name: str, payload: dict[str, Any], task_id: str) -> bool:
    """Whether a session event may mean the task has settled (finished, failed, asks a human)."""
    if name == "end_session":
        return True
    return payload.get("taskId") == task_id and payload.get("type") in ("task_completed", "error", "guardrail_trigger")
