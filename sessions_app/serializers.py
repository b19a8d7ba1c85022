"""Request shapes of the session and task endpoints as serializers (spec README §1, api.md §0.3).

A task's fields come under any generation's names (G1 `taskDetails`/`startingUrl`, G2
`startingPoint`, G3 `prompt`); a session body carries them flat (G1), in `initialTask` (G2) or
in `task` (G3). `sessions_app.schema` turns the validated data into a SessionInput / Message;
errors reach the client through `enigma_site.errors.validation_error`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit

import jsonschema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import ErrorDetail, ValidationError

from agents.browser import is_valid_key
from enigma_site.errors import REQUIRED, Code, invalid, validation_error
from enigma_site.serializers import (
    AnyField,
    BooleanField,
    CharField,
    ChoiceField,
    IntegerField,
    ListField,
    LooseCharField,
    MessageChoiceField,
    NullIsMissing,
    NumberField,
    Serializer,
    validated,
)

from .cdp import token_ttl_s

MAX_DURATION_MIN, MAX_DURATION_MAX = 1000, 300_000
TOKENS_MAX = 100_000
VIEW_WIDTH, VIEW_HEIGHT, CHROME_HEIGHT = 1024, 600, 155
OUTPUT_TYPES = ("text", "structured_json", "structured_csv")
REACH_OUT_MODES = ("off", "guardrail_only", "full")
SUBMITTED_DATA = ("ai_response", "full_response", "just_ping")
INTERACTION_TYPES = ("takeOverControl", "releaseControl", "CLICK", "DOUBLE_CLICK", "TYPE", "KEY_PRESS")
_HOST_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9])?)(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9])?)*$")


def _required(field: str, message: str = REQUIRED) -> ValidationError:
    return ValidationError({field: [ErrorDetail(message, code="required")]})


def _refuse(field: str, message: str, code: str | Code = "invalid") -> ValidationError:
    """A ValidationError of `field` from a serializer's `validate`."""
    return ValidationError({field: [ErrorDetail(message, code=code)]})


def normalize_url(value: str) -> str:
    """Return an http(s) URL (a bare host like `amazon.com` gets `https://`), or raise a
    field ValidationError."""
    raw = value.strip()
    if not raw:
        raise invalid("must not be empty")
    if "://" not in raw:
        raw = "https://" + raw
    try:
        parts = urlsplit(raw)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # "http://[::1", a port out of range or not a number
        valid = False
    if not valid:
        raise invalid("must be an http(s) URL", value=value)
    return raw


def normalize_domain(value: Any) -> str:
    """Return the host name or address a domain entry names, or raise a field ValidationError."""
    if not isinstance(value, str) or not value.strip():
        raise invalid("must be a domain name")
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
        raise invalid(f"'{value}' is not a domain name")
    return host


class UrlField(CharField):
    """An http(s) URL; a bare host gets `https://`. An empty string is no URL (None)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_length=4096, **kwargs)

    def to_internal_value(self, data: Any) -> str:
        text = super().to_internal_value(data)
        return normalize_url(text) if text else text


@extend_schema_field(OpenApiTypes.STR)
class DomainField(serializers.Field):
    """A host name or address (`example.com`, `*.example.com`, a URL's host)."""

    default_error_messages = {"null": "must be a domain name"}

    def to_internal_value(self, data: Any) -> str:
        return normalize_domain(data)

    def to_representation(self, value: Any) -> Any:
        return value


class FileIdsField(ListField):
    """fileIds of uploaded files (`POST /files/upload`)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(child=serializers.CharField(), message="an array of fileIds", **kwargs)

    def to_internal_value(self, data: Any) -> list[str]:
        if not isinstance(data, list) or not all(isinstance(f, str) and f for f in data):
            raise invalid("an array of fileIds")
        return list(data)


@extend_schema_field({"type": "object", "additionalProperties": {"type": "string"}, "minProperties": 1})
class SecretFieldsField(AnyField):
    """Field name -> value, typed by the browser where the agent writes its placeholder."""


class SecretSerializer(Serializer):
    """Credentials for the pages whose host matches `match` (spec README §9)."""

    match = LooseCharField(required=False, allow_null=True, help_text="host the secret is for")
    fields = SecretFieldsField(required=False, allow_null=True)  # type: ignore[assignment]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        match = attrs.get("match")
        if not isinstance(match, str) or not match.strip():
            raise _refuse("match", "required string")
        fields = attrs.get("fields")
        if (
            not isinstance(fields, dict)
            or not fields
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items())
        ):
            raise _refuse("fields", "an object of strings")
        return {"match": match.strip().lower(), "fields": dict(fields)}


@extend_schema_field(OpenApiTypes.STR)
class TextField(serializers.Field):
    """Any value, kept as its text (`name` of a webhook: compatibility with clients that send
    numbers)."""

    def to_internal_value(self, data: Any) -> str:
        return str(data or "")

    def to_representation(self, value: Any) -> str:
        return str(value)


class WebhookSerializer(Serializer):
    """Where to POST the task's result when it finishes (api.md §5.7)."""

    name = TextField(required=False, allow_null=True)
    url = LooseCharField(required=False, allow_null=True, help_text="http(s) URL (required)")
    auth = CharField(required=False, allow_null=True, help_text="sent as the Authorization header")
    submittedData = ChoiceField(SUBMITTED_DATA, required=False, default="full_response")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        url = attrs.get("url")
        if not isinstance(url, str):
            raise _refuse("url", "required URL")
        try:
            url = normalize_url(url)
        except ValidationError as exc:
            raise ValidationError({"url": exc.detail}) from None
        return {
            "name": attrs.get("name") or "",
            "url": url,
            "auth": attrs.get("auth"),
            "submittedData": attrs["submittedData"],
        }


@extend_schema_field(
    {
        "oneOf": [
            {"type": "object", "description": "JSON Schema"},
            {"type": "array", "items": {"type": "string"}, "description": "CSV columns"},
        ]
    }
)
class OutputSchemaField(AnyField):
    pass


class TaskSerializer(Serializer):
    """A task under any generation's names (api.md §0.3)."""

    either: ClassVar[tuple[tuple[str, str], ...]] = (("taskDetails", "prompt"), ("startingUrl", "startingPoint"))

    taskDetails = CharField(
        max_length=20_000, required=False, allow_null=True, help_text="the task in plain language (G1, G2)"
    )
    prompt = CharField(max_length=20_000, required=False, allow_null=True, help_text="the task in plain language (G3)")
    startingUrl = UrlField(required=False, allow_null=True, help_text="first page (G1, G3)")
    startingPoint = UrlField(required=False, allow_null=True, help_text="first page (G2)")
    maxDuration = IntegerField(
        low=MAX_DURATION_MIN,
        high=MAX_DURATION_MAX,
        required=False,
        allow_null=True,
        help_text="ms the task may run (default 300000)",
    )
    maxInputTokens = IntegerField(low=0, high=TOKENS_MAX, required=False, allow_null=True)
    maxOutputTokens = IntegerField(low=0, high=TOKENS_MAX, required=False, allow_null=True)
    avoidDomains = ListField(
        child=DomainField(),
        required=False,
        allow_null=True,
        message="must be an array of domains",
        help_text="hosts the browser may not reach (enforced in its network layer)",
    )
    terminateOnCompletion = BooleanField(required=False, allow_null=True)
    outputType = CharField(
        max_length=20_000,
        required=False,
        allow_null=True,
        help_text="text, structured_json or structured_csv (structured: structured_json)",
    )
    outputSchema = OutputSchemaField(
        required=False, allow_null=True, help_text="a JSON Schema (structured_json) or column names (structured_csv)"
    )
    secrets = ListField(child=SecretSerializer(), required=False, allow_null=True)
    files = FileIdsField(required=False, allow_null=True)
    webhook = WebhookSerializer(required=False, allow_null=True)

    def __init__(self, *args: Any, text_key: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.text_key = text_key  # the one name the task text must have here, when fixed

    def early_errors(self, data: Mapping[str, Any], order: dict[str, int]) -> list[tuple[float, str, Any]]:
        # outputType and outputSchema are checked together, after terminateOnCompletion
        if data.get("outputType") is not None and not isinstance(data["outputType"], str):
            return []  # the field's own error
        try:
            _output({key: data.get(key) for key in ("outputType", "outputSchema")})
        except ValidationError as exc:
            name, detail = next(iter(exc.detail.items()))  # type: ignore[union-attr]
            return [(order["terminateOnCompletion"] + 0.5, name, detail)]
        return []

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """The task with G3 names and defaults applied; `given` lists the fields set, `textKey`
        the name its text has (or must have), `hasText` whether it has one."""
        attrs = {k: v for k, v in attrs.items() if k in TaskSerializer._declared_fields}
        output_type, schema = _output(attrs)
        url_key = "startingPoint" if "startingPoint" in attrs else "startingUrl"
        text_key = self.text_key or ("prompt" if "prompt" in attrs else "taskDetails")
        return {
            "given": {k for k, v in attrs.items() if v is not None},
            "textKey": text_key,
            "hasText": attrs.get(text_key) is not None,
            "prompt": (attrs.get("prompt") if "prompt" in attrs else attrs.get("taskDetails")) or "",
            "startingUrl": attrs.get(url_key) or None,
            "maxDuration": _or(attrs.get("maxDuration"), MAX_DURATION_MAX),
            "maxInputTokens": _or(attrs.get("maxInputTokens"), TOKENS_MAX),
            "maxOutputTokens": _or(attrs.get("maxOutputTokens"), TOKENS_MAX),
            "avoidDomains": sorted(set(attrs.get("avoidDomains") or [])),
            "terminateOnCompletion": bool(attrs.get("terminateOnCompletion")),
            "outputType": output_type,
            "outputSchema": schema,
            "secrets": attrs.get("secrets") or [],
            "files": attrs.get("files") or [],
            "webhook": attrs.get("webhook"),
        }


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


def _output(attrs: dict[str, Any]) -> tuple[str, Any]:
    """(outputType, outputSchema) checked against each other."""
    output_type, schema = attrs.get("outputType"), attrs.get("outputSchema")
    if output_type is None:
        if schema is not None:
            raise _refuse("outputType", "required with outputSchema")
        return "text", None
    if output_type == "structured":  # older spelling (api.md §9 #22)
        output_type = "structured_json"
    if output_type not in OUTPUT_TYPES:
        raise _refuse("outputType", "must be one of " + ", ".join(OUTPUT_TYPES))
    if output_type == "structured_json":
        if not isinstance(schema, dict):
            raise _refuse("outputSchema", "a JSON Schema object is required for structured_json")
        try:
            jsonschema.validators.validator_for(schema).check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise _refuse("outputSchema", exc.message) from exc
        return output_type, schema
    if output_type == "structured_csv":
        if not isinstance(schema, list) or not schema or not all(isinstance(c, str) and c.strip() for c in schema):
            raise _refuse("outputSchema", "a non-empty array of column names is required for structured_csv")
        return output_type, [c.strip() for c in schema]
    return output_type, None


@extend_schema_field(
    {
        "type": "object",
        "description": "a proxy: {source: 'custom', server, username?, "
        "password?} or {source: 'WebRun', country, level?} (api.md §5.4)",
    }
)
class ProxyField(serializers.JSONField):
    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise invalid("must be an object or null")
        return data


class SessionFieldsSerializer(Serializer):
    """The fields of a session (start-session, run-task) besides its first task."""

    mode = ChoiceField(["default"], required=False, default="default", message='only "default" is supported')
    environmentId = CharField(
        max_length=64, required=False, allow_null=True, help_text="environment whose profile and files the session uses"
    )
    profileId = CharField(max_length=64, required=False, allow_null=True, help_text="older name of environmentId")
    policyId = CharField(max_length=64, required=False, allow_null=True)
    reachOutMode = MessageChoiceField(
        REACH_OUT_MODES,
        required=False,
        allow_null=True,
        message="reachOutMode must be one of: " + ", ".join(REACH_OUT_MODES),
    )
    recording = BooleanField(required=False, allow_null=True, help_text="false: no recording (default true)")
    cdp = BooleanField(
        required=False, allow_null=True, help_text="true: its own browser, reachable over raw CDP at connectUrl"
    )
    proxy = ProxyField(required=False, allow_null=True)
    task = TaskSerializer(required=False, allow_null=True, text_key="prompt", help_text="the first task (G3)")
    initialTask = TaskSerializer(required=False, allow_null=True, help_text="the first task (G2)")


class StartSessionSerializer(SessionFieldsSerializer, TaskSerializer):
    """A start-session body: session fields plus one task, flat (G1 names), in `initialTask`
    (G2) or in `task` (G3). Unknown fields are refused."""

    either = (("environmentId", "profileId"), *TaskSerializer.either)
    nested_keys: ClassVar[tuple[str, str]] = ("task", "initialTask")
    require_task: ClassVar[bool] = False

    def early_errors(self, data: Mapping[str, Any], order: dict[str, int]) -> list[tuple[float, str, Any]]:
        errors = []
        if all(key in data for key in self.nested_keys):
            errors.append((-1.0, "initialTask", [ErrorDetail("task", code=Code("either"))]))
        if self.require_task and data.get("cdp") is True:
            errors.append(
                (
                    order["task"] - 0.5,
                    "cdp",
                    [
                        ErrorDetail(
                            "CDP access needs start-session (run-task ends its session with the task)", code="invalid"
                        )
                    ],
                )
            )
        nested = next((key for key in self.nested_keys if key in data), None)
        flat = next((key for key in data if key in TaskSerializer._declared_fields), None)
        if nested is not None and flat is not None:
            message = f"'{flat}' belongs inside '{nested}' when '{nested}' is given"
            errors.append((order["task"] - 0.25, flat, [ErrorDetail(message, code="message")]))
        return errors + super().early_errors(data, order)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        nested = next((key for key in self.nested_keys if key in attrs), None)
        if nested is None:
            task, prefix = super().validate(attrs), ""
        else:
            prefix = f"{nested}."
            task = attrs[nested] or {**super().validate({}), "textKey": "prompt" if nested == "task" else "taskDetails"}
        if self.require_task and not task["hasText"]:
            raise _required(f"{prefix}{task['textKey']}")
        return {
            "mode": attrs["mode"],
            "environmentId": attrs.get("profileId" if "profileId" in attrs else "environmentId") or None,
            "policyId": attrs.get("policyId") or None,
            "reachOutMode": attrs.get("reachOutMode") or "guardrail_only",
            "recording": _or(attrs.get("recording"), True),
            "cdp": bool(attrs.get("cdp")),
            "proxy": attrs.get("proxy"),
            "task": task,
            "taskPrefix": prefix,
        }


class RunTaskSerializer(StartSessionSerializer):
    """A run-task body: as start-session, and the task text is required."""

    require_task = True


# ----- send-message -----------------------------------------------------------------------


class ClickSerializer(Serializer):
    type = ChoiceField(["CLICK", "DOUBLE_CLICK"])
    x = NumberField(help_text=f"0 to {VIEW_WIDTH}")
    y = NumberField(help_text=f"{CHROME_HEIGHT} to {VIEW_HEIGHT} (the top {CHROME_HEIGHT} px are browser chrome)")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        for axis, low, high in (("x", 0, VIEW_WIDTH), ("y", CHROME_HEIGHT, VIEW_HEIGHT)):
            if not low <= attrs[axis] <= high:
                raise _refuse(
                    axis,
                    f"must be between {low} and {high}",
                    Code("invalid", value=self.initial_data[axis], min=low, max=high),
                )
        return {"type": attrs["type"], "x": attrs["x"], "y": attrs["y"]}


class TypeSerializer(Serializer):
    type = ChoiceField(["TYPE"])
    text = CharField(max_length=10_000)
    humanLike = BooleanField(required=False, default=False)


class KeyPressSerializer(Serializer):
    type = ChoiceField(["KEY_PRESS"])
    key = LooseCharField(required=False, allow_null=True, help_text="a Playwright key name: Enter, Tab, Control+a, ...")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        key = attrs.get("key")
        if not isinstance(key, str) or not key:
            raise _required("key")
        if not is_valid_key(key):
            raise _refuse("key", f"unknown key '{key}'")
        return {"type": "KEY_PRESS", "key": key}


class ControlSerializer(Serializer):
    type = ChoiceField(["takeOverControl", "releaseControl"])


ACTION_SERIALIZERS: dict[str, type[Serializer]] = {
    "takeOverControl": ControlSerializer,
    "releaseControl": ControlSerializer,
    "CLICK": ClickSerializer,
    "DOUBLE_CLICK": ClickSerializer,
    "TYPE": TypeSerializer,
    "KEY_PRESS": KeyPressSerializer,
}


@extend_schema_field(
    PolymorphicProxySerializer(
        component_name="InteractionAction",
        resource_type_field_name=None,
        serializers=[ControlSerializer, ClickSerializer, TypeSerializer, KeyPressSerializer],
    )
)
class ActionField(NullIsMissing, serializers.Field):
    """An interaction action, by its `type`."""

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise ValidationError("This field is required.", code="required")
        kind = data.get("type")
        if not isinstance(kind, str) or kind not in ACTION_SERIALIZERS:
            raise _refuse("type", "must be one of " + ", ".join(INTERACTION_TYPES))
        serializer = ACTION_SERIALIZERS[kind](data=data)
        if not serializer.is_valid():
            raise ValidationError(serializer.errors)
        return dict(serializer.validated_data)

    def to_representation(self, value: Any) -> Any:
        return value


class NewTaskHeadSerializer(Serializer):
    actionType = ChoiceField(["newTask"])
    newState = ChoiceField(["start"], required=False, default="start", message='must be "start" for newTask')


class NewTaskMessageSerializer(NewTaskHeadSerializer, TaskSerializer):
    """A new task for the session: queued behind the running one (spec README §4)."""

    def early_errors(self, data: Mapping[str, Any], order: dict[str, int]) -> list[tuple[float, str, Any]]:
        text_key = "prompt" if "prompt" in data else "taskDetails"
        missing = [(order["newState"] + 0.5, text_key, [ErrorDetail(REQUIRED, code="required")])]
        return (missing if data.get(text_key) is None else []) + super().early_errors(data, order)


class StateMessageSerializer(Serializer):
    """Pause, resume, stop the running task, or terminate the session."""

    actionType = ChoiceField(["state"])
    newState = ChoiceField(["pause", "resume", "stop", "terminate"])


class InteractionMessageSerializer(Serializer):
    """Take over or release control, or act on the page (clicks in window coordinates)."""

    actionType = ChoiceField(["interaction"])
    action = ActionField()


class GuardrailMessageSerializer(Serializer):
    """Answer the agent's question (resume with the answer) or stop the task."""

    actionType = ChoiceField(["guardrail"])
    taskDetails = LooseCharField(required=False, allow_null=True, help_text="the answer")
    prompt = LooseCharField(required=False, allow_null=True, help_text="the answer (G3 name)")
    newState = ChoiceField(["resume", "stop"], required=False, default="resume", message="must be resume or stop")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        text_key = "prompt" if "prompt" in attrs else "taskDetails"
        answer = attrs.get(text_key)
        if attrs["newState"] == "resume":
            if answer is None:
                raise _required(text_key)
            if not isinstance(answer, str) or not answer.strip():
                raise _refuse(text_key, "the answer must be a non-empty string")
        elif answer is not None and not isinstance(answer, str):
            raise _refuse(text_key, "must be a string")
        return {"newState": attrs["newState"], "answer": (answer or "").strip()}


MESSAGE_SERIALIZERS: dict[str, type[Serializer]] = {
    "newTask": NewTaskMessageSerializer,
    "state": StateMessageSerializer,
    "interaction": InteractionMessageSerializer,
    "guardrail": GuardrailMessageSerializer,
}
MESSAGE_SCHEMA = PolymorphicProxySerializer(
    component_name="Message",
    resource_type_field_name="actionType",
    serializers={name: serializer for name, serializer in MESSAGE_SERIALIZERS.items()},
)


def message_validated(message: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(actionType, validated data) of a send-message `message` object; raise ApiError."""
    action_type = message.get("actionType")
    if action_type is None:
        raise validation_error(_required("actionType").detail, "message")
    if not isinstance(action_type, str) or action_type not in MESSAGE_SERIALIZERS:
        raise validation_error(
            _refuse("actionType", "must be one of " + ", ".join(MESSAGE_SERIALIZERS)).detail, "message"
        )
    return action_type, validated(MESSAGE_SERIALIZERS[action_type](data=message), "message")


@extend_schema_field(MESSAGE_SCHEMA)
class MessageField(AnyField):
    """The message; checked after the session is found (an unknown session is a 404 first)."""


class SendMessageSerializer(Serializer):
    sessionId = LooseCharField(help_text="the session's id")
    message = MessageField()

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict) or not data.get("sessionId") or data.get("message") is None:
            missing = "sessionId" if not isinstance(data, dict) or not data.get("sessionId") else "message"
            raise _required(missing, "sessionId and message are required")
        attrs = super().to_internal_value(data)
        if not isinstance(attrs["sessionId"], str):
            raise _refuse("sessionId", "must be a string")
        return attrs


class TtlSecondsField(IntegerField):
    """Seconds from 1 to ENIGMA_CDP_TOKEN_TTL_S (a JSON integer)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(low=1, high=2**31, **kwargs)

    def validate_empty_values(self, data: Any) -> tuple[bool, Any]:
        if data is None:
            self.to_internal_value(data)
        return super().validate_empty_values(data)

    def to_internal_value(self, data: Any) -> int:
        high = token_ttl_s()
        if isinstance(data, bool) or not isinstance(data, int) or not 1 <= data <= high:
            raise invalid(f"an integer from 1 to {high}")
        return data


class CdpTokenSerializer(Serializer):
    """POST /sessions/<id>/cdp-tokens; other fields, and a body that is no object, are ignored."""

    strict = False
    ttlSeconds = TtlSecondsField(
        required=False, help_text="seconds the connectUrl opens connections (default and most: ENIGMA_CDP_TOKEN_TTL_S)"
    )


# ----- response shapes (what the selectors return; the OpenAPI document shows them) -------------


class UsageSerializer(serializers.Serializer):
    """Both key sets of spec README §5."""

    inputTokens = serializers.IntegerField()
    outputTokens = serializers.IntegerField()
    computeTime = serializers.FloatField(help_text="seconds")
    cost = serializers.FloatField(help_text="USD")
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()
    completion_time = serializers.FloatField()


class SessionUsageSerializer(UsageSerializer):
    networkBytesSent = serializers.IntegerField()
    networkBytesReceived = serializers.IntegerField()


class StreamingSerializer(serializers.Serializer):
    webRTCURL = serializers.URLField(help_text="WHEP endpoint of the live picture")
    webViewURL = serializers.URLField(help_text="viewer page with control")
    dimensions = serializers.DictField(child=serializers.IntegerField(), help_text="{width: 1024, height: 600}")


class StartSessionResponseSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    sessionId = serializers.CharField()
    socketURL = serializers.URLField(help_text="Socket.IO origin; handshake auth {sessionId}")
    streaming = StreamingSerializer()
    initialPrompt = serializers.CharField()
    expiresIn = serializers.IntegerField(help_text="ms of inactivity before the session ends")
    balance = serializers.FloatField(help_text="USD")
    message = serializers.CharField()
    taskId = serializers.CharField(required=False, help_text="with a first task")
    pollUrl = serializers.URLField(required=False, help_text="with a first task")
    connectUrl = serializers.CharField(required=False, help_text='with "cdp": true: ws(s)://.../cdp/<token>')


class TaskResponseSerializer(serializers.Serializer):
    """A task, finished or not (seed 002; spec README §5): which keys are present depends on
    `status`."""

    success = serializers.BooleanField()
    sessionId = serializers.CharField()
    taskId = serializers.CharField()
    status = serializers.ChoiceField(
        ["complete", "guardrail_trigger", "failed", "stopped", "terminated", "active", "pending"]
    )
    type = serializers.ChoiceField(["task_completed", "guardrail_trigger"], required=False)
    data = serializers.DictField(
        required=False,
        help_text="message, files, network, token counts; "  # type: ignore[assignment]
        "for a guardrail {type: human_input_needed, value}",
    )
    usage = UsageSerializer()
    result = serializers.DictField(required=False, help_text="G1: {type, data, usage}")
    completedAt = serializers.DateTimeField(required=False, allow_null=True)
    state = serializers.ChoiceField(["queued", "running", "paused"], required=False)
    pending = serializers.BooleanField(required=False)
    pollUrl = serializers.URLField(required=False)
    message = serializers.CharField(required=False)
    error = serializers.CharField(required=False)
    code = serializers.CharField(required=False)
    details = serializers.DictField(required=False)


class SendMessageResponseSerializer(serializers.Serializer):
    """`{success, message}`, or for newTask the task as run-task answers it."""

    success = serializers.BooleanField()
    message = serializers.CharField(required=False)
    sessionId = serializers.CharField(required=False)
    taskId = serializers.CharField(required=False)


class SessionSummarySerializer(serializers.Serializer):
    sessionId = serializers.CharField()
    state = serializers.CharField()
    endReason = serializers.CharField(allow_null=True)
    createdAt = serializers.DateTimeField()
    endedAt = serializers.DateTimeField(allow_null=True)
    currentUrl = serializers.CharField(allow_null=True)
    usage = SessionUsageSerializer()


class PaginationSerializer(serializers.Serializer):
    page = serializers.IntegerField()
    limit = serializers.IntegerField()
    total = serializers.IntegerField()
    totalPages = serializers.IntegerField()


class SessionPaginationSerializer(PaginationSerializer):
    pages = serializers.IntegerField(help_text="the same as totalPages (its older name here)")


class SessionListSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    sessions = SessionSummarySerializer(many=True)
    pagination = SessionPaginationSerializer()


class SessionListQuerySerializer(serializers.Serializer):
    state = serializers.CharField(required=False, help_text="only sessions in this state")
    page = serializers.IntegerField(required=False, min_value=1, default=1)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=100, default=20)


class SessionTaskSerializer(serializers.Serializer):
    taskId = serializers.CharField()
    status = serializers.CharField()
    prompt = serializers.CharField()
    createdAt = serializers.DateTimeField()
    startedAt = serializers.DateTimeField(allow_null=True)
    completedAt = serializers.DateTimeField(allow_null=True)
    pollUrl = serializers.URLField()
    usage = UsageSerializer()


class CdpStatusSerializer(serializers.Serializer):
    enabled = serializers.BooleanField()
    clients = serializers.IntegerField(help_text="CDP clients connected now")


class SessionDetailSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    sessionId = serializers.CharField()
    state = serializers.CharField()
    endReason = serializers.CharField(allow_null=True)
    paused = serializers.BooleanField()
    humanControl = serializers.BooleanField()
    currentUrl = serializers.CharField(allow_null=True)
    currentTitle = serializers.CharField(allow_null=True)
    createdAt = serializers.DateTimeField()
    startedAt = serializers.DateTimeField(allow_null=True)
    lastActivityAt = serializers.DateTimeField()
    endedAt = serializers.DateTimeField(allow_null=True)
    config = serializers.DictField()
    cdp = CdpStatusSerializer()
    usage = SessionUsageSerializer()
    tasks = SessionTaskSerializer(many=True)


class EventSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    data = serializers.JSONField()  # type: ignore[assignment]
    createdAt = serializers.DateTimeField()


class SessionEventsSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    events = EventSerializer(many=True)
    lastEventId = serializers.IntegerField(help_text="pass as ?after= to read on")


class HealthSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    status = serializers.ChoiceField(["healthy", "unhealthy"])
    instancesAvailable = serializers.BooleanField()
    instanceCount = serializers.IntegerField()
    workers = serializers.IntegerField()
    capacity = serializers.IntegerField()
    inUse = serializers.IntegerField()
    openContexts = serializers.IntegerField()
    timestamp = serializers.DateTimeField()
    message = serializers.CharField(required=False, help_text="when unhealthy (503)")
    error = serializers.CharField(required=False)
    code = serializers.CharField(required=False)
    details = serializers.DictField(required=False)


class ActiveSocketsSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    sockets = serializers.ListField(child=serializers.CharField())
    count = serializers.IntegerField()
    timestamp = serializers.DateTimeField()


class CdpTokenResponseSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    connectUrl = serializers.CharField()
    expiresIn = serializers.IntegerField(help_text="ms")


class CdpRevokeResponseSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    revoked = serializers.IntegerField()


class SessionFileSerializer(serializers.Serializer):
    fileId = serializers.CharField()
    originalName = serializers.CharField()
    size = serializers.IntegerField()
    createdAt = serializers.DateTimeField()
    taskId = serializers.CharField(allow_null=True)
    sourceUrl = serializers.CharField()
    downloadUrl = serializers.URLField()


class SessionFilesSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    files = SessionFileSerializer(many=True)
