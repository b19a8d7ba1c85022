"""Request normalisation at the edge (spec README §1): three generations in, one shape out.

G1 flat fields (`taskDetails`, `startingUrl`, ...), G2 `initialTask{taskDetails, startingPoint}`
and G3 `task{prompt, startingUrl}` all become a `SessionInput` holding a `TaskInput`. Unknown
fields are rejected with 400 naming the field; every error names its parameter.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import jsonschema

from agents.browser import is_valid_key
from enigma_site.errors import ApiError, InvalidParameter, MissingField
from enigma_site.parsers import check_value

MAX_DURATION_MIN, MAX_DURATION_MAX = 1000, 300_000
TOKENS_MAX = 100_000
VIEW_WIDTH, VIEW_HEIGHT, CHROME_HEIGHT = 1024, 600, 155
OUTPUT_TYPES = ("text", "structured_json", "structured_csv")
REACH_OUT_MODES = ("off", "guardrail_only", "full")

TASK_FIELDS = {
    "taskDetails", "prompt", "startingUrl", "startingPoint", "maxDuration", "maxInputTokens",
    "maxOutputTokens", "avoidDomains", "terminateOnCompletion", "outputType", "outputSchema",
    "secrets", "files", "webhook",
}
SESSION_FIELDS = {
    "mode", "environmentId", "profileId", "policyId", "proxy", "reachOutMode", "task",
    "initialTask", "recording", "cdp",
}
_HOST_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9])?)(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9])?)*$")


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

    def public_config(self) -> dict[str, Any]:
        """What is stored on the task row: everything but the secret values."""
        return {
            "startingUrl": self.starting_url,
            "maxDuration": self.max_duration_ms,
            "maxInputTokens": self.max_input_tokens,
            "maxOutputTokens": self.max_output_tokens,
            "avoidDomains": self.avoid_domains,
            "terminateOnCompletion": self.terminate_on_completion,
            "outputType": self.output_type,
            "outputSchema": self.output_schema,
            "files": self.files,
            "webhook": _redact_webhook(self.webhook),
            "secretMatches": [s["match"] for s in self.secrets],
        }


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


def _redact_webhook(webhook: dict[str, Any] | None) -> dict[str, Any] | None:
    if webhook is None:
        return None
    return {k: ("***" if k == "auth" else v) for k, v in webhook.items()}


def _reject_unknown(data: dict[str, Any], allowed: set[str], prefix: str = "") -> None:
    for key in data:
        if key not in allowed:
            raise InvalidParameter(f"{prefix}{key}", f"Unknown field '{prefix}{key}'")


def _int(data: dict[str, Any], key: str, prefix: str, low: int, high: int) -> int | None:
    if key not in data or data[key] is None:
        return None
    value = data[key]
    name = f"{prefix}{key}"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise InvalidParameter(name, f"Invalid parameter '{name}': must be an integer", value=value)
    value = int(value)
    if value < low:
        raise InvalidParameter(name, f"Invalid parameter '{name}': must be at least {low}",
                               value=value, min=low)
    if value > high:
        raise InvalidParameter(name, f"Invalid parameter '{name}': must be at most {high}",
                               value=value, max=high)
    return value


def _bool(data: dict[str, Any], key: str, prefix: str) -> bool | None:
    if key not in data or data[key] is None:
        return None
    if not isinstance(data[key], bool):
        raise InvalidParameter(f"{prefix}{key}", f"Invalid parameter '{prefix}{key}': must be a boolean")
    return data[key]


def _str(data: dict[str, Any], key: str, prefix: str, *, max_len: int = 20_000) -> str | None:
    if key not in data or data[key] is None:
        return None
    value = data[key]
    if not isinstance(value, str):
        raise InvalidParameter(f"{prefix}{key}", f"Invalid parameter '{prefix}{key}': must be a string")
    if len(value) > max_len:
        raise InvalidParameter(f"{prefix}{key}",
                               f"Invalid parameter '{prefix}{key}': at most {max_len} characters")
    return value


def normalize_url(value: str, name: str) -> str:
    """Return an http(s) URL; a bare host like `amazon.com` gets `https://`."""
    raw = value.strip()
    if not raw:
        raise InvalidParameter(name, f"Invalid parameter '{name}': must not be empty")
    if "://" not in raw:
        raw = "https://" + raw
    try:
        parts = urlsplit(raw)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # "http://[::1", a port out of range or not a number
        valid = False
    if not valid:
        raise InvalidParameter(name, f"Invalid parameter '{name}': must be an http(s) URL",
                               value=value)
    return raw


def normalize_domain(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidParameter(name, f"Invalid parameter '{name}': must be a domain name")
    raw = value.strip().lower()
    try:
        host = urlsplit(raw if "://" in raw else "//" + raw).hostname or ""
    except ValueError:  # "[::1"
        host = ""
    host = host.removeprefix("*.").rstrip(".")
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    if not _HOST_RE.match(host):
        raise InvalidParameter(name, f"Invalid parameter '{name}': '{value}' is not a domain name")
    return host


def _parse_secrets(value: Any, name: str) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidParameter(name, f"Invalid parameter '{name}': must be an array")
    out = []
    for i, entry in enumerate(value):
        item = f"{name}[{i}]"
        if not isinstance(entry, dict):
            raise InvalidParameter(item, f"Invalid parameter '{item}': must be an object")
        _reject_unknown(entry, {"match", "fields"}, f"{item}.")
        match = entry.get("match")
        if not isinstance(match, str) or not match.strip():
            raise InvalidParameter(f"{item}.match", f"Invalid parameter '{item}.match': required string")
        fields = entry.get("fields")
        if not isinstance(fields, dict) or not fields or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in fields.items()
        ):
            raise InvalidParameter(f"{item}.fields",
                                   f"Invalid parameter '{item}.fields': an object of strings")
        out.append({"match": match.strip().lower(), "fields": dict(fields)})
    return out


def _parse_output(data: dict[str, Any], prefix: str, task: TaskInput) -> None:
    output_type = _str(data, "outputType", prefix)
    if output_type is None:
        if data.get("outputSchema") is not None:
            raise InvalidParameter(f"{prefix}outputType",
                                   f"Invalid parameter '{prefix}outputType': required with outputSchema")
        return
    if output_type == "structured":  # older spelling (api.md §9 #22)
        output_type = "structured_json"
    if output_type not in OUTPUT_TYPES:
        raise InvalidParameter(f"{prefix}outputType",
                               f"Invalid parameter '{prefix}outputType': must be one of "
                               + ", ".join(OUTPUT_TYPES))
    task.output_type = output_type
    schema = data.get("outputSchema")
    name = f"{prefix}outputSchema"
    if output_type == "structured_json":
        if not isinstance(schema, dict):
            raise InvalidParameter(name, f"Invalid parameter '{name}': a JSON Schema object is "
                                   "required for structured_json")
        try:
            jsonschema.validators.validator_for(schema).check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise InvalidParameter(name, f"Invalid parameter '{name}': {exc.message}") from exc
        task.output_schema = schema
    elif output_type == "structured_csv":
        if not isinstance(schema, list) or not schema or not all(
            isinstance(c, str) and c.strip() for c in schema
        ):
            raise InvalidParameter(name, f"Invalid parameter '{name}': a non-empty array of "
                                   "column names is required for structured_csv")
        task.output_schema = [c.strip() for c in schema]


def parse_webhook(value: Any, name: str) -> dict[str, Any] | None:
    """A task's `webhook` (also a trigger's): {name, url, auth, submittedData}, or None."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidParameter(name, f"Invalid parameter '{name}': must be an object")
    _reject_unknown(value, {"name", "url", "auth", "submittedData"}, f"{name}.")
    url = value.get("url")
    if not isinstance(url, str):
        raise InvalidParameter(f"{name}.url", f"Invalid parameter '{name}.url': required URL")
    url = normalize_url(url, f"{name}.url")
    submitted = value.get("submittedData", "full_response")
    if submitted not in ("ai_response", "full_response", "just_ping"):
        raise InvalidParameter(f"{name}.submittedData", f"Invalid parameter '{name}.submittedData': "
                               "must be one of ai_response, full_response, just_ping")
    auth = value.get("auth")
    if auth is not None and not isinstance(auth, str):
        raise InvalidParameter(f"{name}.auth", f"Invalid parameter '{name}.auth': must be a string")
    return {"name": str(value.get("name") or ""), "url": url, "auth": auth,
            "submittedData": submitted}


def parse_task(data: dict[str, Any], prefix: str = "", *, text_key_hint: str = "taskDetails") -> TaskInput:
    """Validate task fields (any generation's names) into a TaskInput."""
    task = TaskInput()
    task.given = {k for k in data if data[k] is not None}
    if "taskDetails" in data and "prompt" in data:
        raise InvalidParameter(f"{prefix}prompt",
                               f"Give either '{prefix}taskDetails' or '{prefix}prompt', not both")
    text_key = "prompt" if "prompt" in data else "taskDetails"
    task.prompt = (_str(data, text_key, prefix) or "").strip()
    if "startingUrl" in data and "startingPoint" in data:
        raise InvalidParameter(f"{prefix}startingPoint",
                               f"Give either '{prefix}startingUrl' or '{prefix}startingPoint', not both")
    url_key = "startingPoint" if "startingPoint" in data else "startingUrl"
    url = _str(data, url_key, prefix, max_len=4096)
    task.starting_url = normalize_url(url, f"{prefix}{url_key}") if url else None
    duration = _int(data, "maxDuration", prefix, MAX_DURATION_MIN, MAX_DURATION_MAX)
    if duration is not None:
        task.max_duration_ms = duration
    tokens_in = _int(data, "maxInputTokens", prefix, 0, TOKENS_MAX)
    if tokens_in is not None:
        task.max_input_tokens = tokens_in
    tokens_out = _int(data, "maxOutputTokens", prefix, 0, TOKENS_MAX)
    if tokens_out is not None:
        task.max_output_tokens = tokens_out
    avoid = data.get("avoidDomains")
    if avoid is not None:
        if not isinstance(avoid, list):
            raise InvalidParameter(f"{prefix}avoidDomains",
                                   f"Invalid parameter '{prefix}avoidDomains': must be an array of domains")
        task.avoid_domains = sorted({normalize_domain(d, f"{prefix}avoidDomains[{i}]")
                                     for i, d in enumerate(avoid)})
    toc = _bool(data, "terminateOnCompletion", prefix)
    if toc is not None:
        task.terminate_on_completion = toc
    _parse_output(data, prefix, task)
    task.secrets = _parse_secrets(data.get("secrets"), f"{prefix}secrets")
    files = data.get("files")
    if files is not None:
        if not isinstance(files, list) or not all(isinstance(f, str) and f for f in files):
            raise InvalidParameter(f"{prefix}files", f"Invalid parameter '{prefix}files': an array of fileIds")
        task.files = list(files)
    task.webhook = parse_webhook(data.get("webhook"), f"{prefix}webhook")
    return task


def _parse_session_fields(body: dict[str, Any], session: SessionInput) -> None:
    mode = body.get("mode", "default")
    if mode != "default":
        raise InvalidParameter("mode", "Invalid parameter 'mode': only \"default\" is supported")
    if "environmentId" in body and "profileId" in body:
        raise InvalidParameter("profileId", "Give either 'environmentId' or 'profileId', not both")
    env_key = "profileId" if "profileId" in body else "environmentId"
    session.environment_id = _str(body, env_key, "", max_len=64) or None
    session.policy_id = _str(body, "policyId", "", max_len=64) or None
    reach = body.get("reachOutMode")
    if reach is not None:
        if reach not in REACH_OUT_MODES:
            raise InvalidParameter("reachOutMode", "reachOutMode must be one of: off, guardrail_only, full")
        session.reach_out_mode = reach
    recording = _bool(body, "recording", "")
    if recording is not None:
        session.recording = recording
    session.cdp = bool(_bool(body, "cdp", ""))
    proxy = body.get("proxy")
    if proxy is not None and not isinstance(proxy, dict):
        raise InvalidParameter("proxy", "Invalid parameter 'proxy': must be an object or null")
    session.proxy = proxy


def parse_session_body(body: Any, *, require_task: bool) -> SessionInput:
    """Parse a start-session (require_task=False) or run-task (require_task=True) body."""
    if not isinstance(body, dict):
        raise ApiError("Request body must be a JSON object", code="INVALID_JSON")
    check_value(body)  # MCP tool arguments do not come through the REST edge
    session = SessionInput()
    if "task" in body and "initialTask" in body:
        raise InvalidParameter("initialTask", "Give either 'task' or 'initialTask', not both")
    nested_key = "task" if "task" in body else ("initialTask" if "initialTask" in body else None)
    flat = {k: v for k, v in body.items() if k in TASK_FIELDS}
    _reject_unknown(body, SESSION_FIELDS | TASK_FIELDS)
    _parse_session_fields(body, session)
    if require_task and session.cdp:
        raise InvalidParameter("cdp", "Invalid parameter 'cdp': CDP access needs start-session "
                               "(run-task ends its session with the task)")
    if nested_key is not None:
        if flat:
            name = next(iter(flat))
            raise InvalidParameter(name, f"'{name}' belongs inside '{nested_key}' when '{nested_key}' is given")
        nested = body[nested_key]
        if nested is None:
            nested = {}
        if not isinstance(nested, dict):
            raise InvalidParameter(nested_key, f"Invalid parameter '{nested_key}': must be an object")
        prefix = f"{nested_key}."
        _reject_unknown(nested, TASK_FIELDS, prefix)
        session.task = parse_task(nested, prefix)
        session.task_prefix = prefix
        text_field = f"{prefix}prompt" if "prompt" in nested or nested_key == "task" else f"{prefix}taskDetails"
    else:
        session.task = parse_task(flat)
        text_field = "prompt" if "prompt" in body else "taskDetails"
        nested = flat
    if require_task:
        raw_text_key = text_field.rsplit(".", 1)[-1]
        if raw_text_key not in nested or nested.get(raw_text_key) is None:
            raise MissingField(text_field)
        if not session.task.prompt:
            raise InvalidTaskDetails(f"{text_field} cannot be empty",
                                     details={"parameter": text_field})
        session.task.terminate_on_completion = True
    return session


@dataclass
class Message:
    action_type: str
    task: TaskInput | None = None
    new_state: str | None = None
    interaction: dict[str, Any] | None = None
    answer: str | None = None


INTERACTION_TYPES = ("takeOverControl", "releaseControl", "CLICK", "DOUBLE_CLICK", "TYPE", "KEY_PRESS")


def _parse_interaction(action: Any) -> dict[str, Any]:
    if not isinstance(action, dict):
        raise MissingField("message.action")
    kind = action.get("type")
    if kind not in INTERACTION_TYPES:
        raise InvalidParameter("message.action.type", "Invalid parameter 'message.action.type': "
                               "must be one of " + ", ".join(INTERACTION_TYPES))
    prefix = "message.action."
    if kind in ("takeOverControl", "releaseControl"):
        _reject_unknown(action, {"type"}, prefix)
        return {"type": kind}
    if kind in ("CLICK", "DOUBLE_CLICK"):
        _reject_unknown(action, {"type", "x", "y"}, prefix)
        for axis in ("x", "y"):
            if axis not in action:
                raise MissingField(f"{prefix}{axis}")
            value = action[axis]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InvalidParameter(f"{prefix}{axis}", f"Invalid parameter '{prefix}{axis}': must be a number")
        x, y = float(action["x"]), float(action["y"])
        if not 0 <= x <= VIEW_WIDTH:
            raise InvalidParameter(f"{prefix}x", f"Invalid parameter '{prefix}x': must be between 0 and {VIEW_WIDTH}",
                                   value=action["x"], min=0, max=VIEW_WIDTH)
        if not CHROME_HEIGHT <= y <= VIEW_HEIGHT:
            raise InvalidParameter(f"{prefix}y", f"Invalid parameter '{prefix}y': must be between "
                                   f"{CHROME_HEIGHT} and {VIEW_HEIGHT}",
                                   value=action["y"], min=CHROME_HEIGHT, max=VIEW_HEIGHT)
        return {"type": kind, "x": x, "y": y}
    if kind == "TYPE":
        _reject_unknown(action, {"type", "text", "humanLike"}, prefix)
        text = action.get("text")
        if not isinstance(text, str):
            raise MissingField(f"{prefix}text") if text is None else InvalidParameter(
                f"{prefix}text", f"Invalid parameter '{prefix}text': must be a string")
        if len(text) > 10_000:
            raise InvalidParameter(f"{prefix}text", f"Invalid parameter '{prefix}text': at most 10000 characters")
        human = action.get("humanLike", False)
        if not isinstance(human, bool):
            raise InvalidParameter(f"{prefix}humanLike", f"Invalid parameter '{prefix}humanLike': must be a boolean")
        return {"type": kind, "text": text, "humanLike": human}
    _reject_unknown(action, {"type", "key"}, prefix)
    key = action.get("key")
    if not isinstance(key, str) or not key:
        raise MissingField(f"{prefix}key")
    if not is_valid_key(key):
        raise InvalidParameter(f"{prefix}key", f"Invalid parameter '{prefix}key': unknown key '{key}'")
    return {"type": kind, "key": key}


def parse_message(message: Any) -> Message:
    """Validate a send-message `message` (also a socket emit) into a Message."""
    if not isinstance(message, dict):
        raise InvalidParameter("message", "Invalid parameter 'message': must be an object")
    check_value(message, "message")  # socket emits and MCP tool arguments skip the REST edge
    action_type = message.get("actionType")
    if action_type is None:
        raise MissingField("message.actionType")
    prefix = "message."
    if action_type == "newTask":
        _reject_unknown(message, TASK_FIELDS | {"actionType", "newState"}, prefix)
        if message.get("newState", "start") != "start":
            raise InvalidParameter("message.newState", "Invalid parameter 'message.newState': must be \"start\" for newTask")
        text_key = "prompt" if "prompt" in message else "taskDetails"
        if message.get(text_key) is None:
            raise MissingField(f"{prefix}{text_key}")
        task = parse_task({k: v for k, v in message.items() if k in TASK_FIELDS}, prefix)
        if not task.prompt:
            raise InvalidTaskDetails(f"{prefix}{text_key} cannot be empty",
                                     details={"parameter": f"{prefix}{text_key}"})
        return Message(action_type="newTask", task=task)
    if action_type == "state":
        _reject_unknown(message, {"actionType", "newState"}, prefix)
        state = message.get("newState")
        if state is None:
            raise MissingField("message.newState")
        if state not in ("pause", "resume", "stop", "terminate"):
            raise InvalidParameter("message.newState", "Invalid parameter 'message.newState': "
                                   "must be one of pause, resume, stop, terminate")
        return Message(action_type="state", new_state=state)
    if action_type == "interaction":
        _reject_unknown(message, {"actionType", "action"}, prefix)
        if "action" not in message:
            raise MissingField("message.action")
        return Message(action_type="interaction", interaction=_parse_interaction(message["action"]))
    if action_type == "guardrail":
        _reject_unknown(message, {"actionType", "taskDetails", "prompt", "newState"}, prefix)
        state = message.get("newState", "resume")
        if state not in ("resume", "stop"):
            raise InvalidParameter("message.newState", "Invalid parameter 'message.newState': must be resume or stop")
        text_key = "prompt" if "prompt" in message else "taskDetails"
        answer = message.get(text_key)
        if state == "resume":
            if answer is None:
                raise MissingField(f"{prefix}{text_key}")
            if not isinstance(answer, str) or not answer.strip():
                raise InvalidParameter(f"{prefix}{text_key}", f"Invalid parameter '{prefix}{text_key}': "
                                       "the answer must be a non-empty string")
        elif answer is not None and not isinstance(answer, str):
            raise InvalidParameter(f"{prefix}{text_key}", f"Invalid parameter '{prefix}{text_key}': must be a string")
        return Message(action_type="guardrail", new_state=state, answer=(answer or "").strip())
    raise InvalidParameter("message.actionType", "Invalid parameter 'message.actionType': must be one of "
                           "newTask, state, interaction, guardrail")
