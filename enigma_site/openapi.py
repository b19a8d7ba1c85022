"""The OpenAPI document of the whole API, built from the URLconf so it cannot drift from it.

DRF views are described by drf-spectacular from their serializers (request bodies, query
parameters, responses); the few plain Django views (the OpenAI-compatible endpoints, the Stripe
webhook, metrics) by the table below. Every operation gets a summary, its security and the error
envelope."""

from __future__ import annotations

import functools
import re
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.urls import URLPattern, URLResolver, get_resolver
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.settings import patched_settings

# Pages, not API: the dashboard, admin and the viewer page.
_NOT_API = ("admin/", "app/", "login/", "signup/", "logout/", "password-reset", "invite/", "view/")
_METHODS = ("get", "post", "put", "patch", "delete")
# Function views (async or plain Django) declare their methods here.
_FUNCTION_VIEW_METHODS = {
    "metrics": ["get"],
    "billing/stripe/webhook": ["post"],
    "v1/chat/completions": ["post"],
    "v1/models": ["get"],
}
_SUMMARIES = {
    "start/start-session": "Start a persistent browser session, optionally with a first task",
    "start/run-task": "Run one task in a new session that ends after it (waits up to 50 s)",
    "start/send-message": "newTask, state (pause/resume/stop/terminate), interaction or guardrail answer",
    "start/health": "Health of the database, Redis, workers and browser capacity (no auth)",
    "task/{session_id}/{task_id}": "Poll a task",
    "metrics": "Prometheus metrics",
    "sessions": "List the team's sessions (?state=&page=&limit=)",
    "sessions/{session_id}": "A session: state, tasks, current URL and title, usage so far",
    "sessions/{session_id}/events": "The session's event log after an event id (?after=N)",
    "environments": "List or create environments",
    "environments/{environment_id}": "Delete an environment with its profile and files",
    "environments/{environment_id}/upload": "Upload a profile archive (.tar.gz)",
    "environments/{environment_id}/files": "List an environment's files",
    "environments/{environment_id}/files/{file_id}": "Delete an environment file",
    "profiles": "List or create profiles (environments, profile view)",
    "profiles/{environment_id}": "Delete a profile",
    "profiles/{environment_id}/upload": "Upload a profile archive (.tar.gz)",
    "files/upload": "Upload files for tasks (multipart `files`)",
    "files/{file_id}/download": "Download a stored file",
    "policies": "List or create automation policies",
    "policies/{policy_id}": "Read, replace or delete a policy",
    "sessions/{session_id}/policy-audit": "Policy decisions taken in a session",
    "cron-jobs": "List or create triggers (scheduled tasks)",
    "cron-jobs/{trigger_id}": "Read, update or delete a trigger with its recent runs",
    "cron-jobs/{trigger_id}/pause": "Pause a trigger",
    "cron-jobs/{trigger_id}/resume": "Resume a trigger (resets its failure count)",
    "cron-jobs/{trigger_id}/trigger": "Run a trigger now",
    "cron-jobs/{trigger_id}/runs": "A trigger's runs (?page=&limit=)",
    "cron-jobs/{trigger_id}/runs/{run_id}": "One trigger run",
    "webhooks/secret/rotate": "Rotate the team's webhook signing secret",
    "task/{session_id}/{task_id}/webhooks": "Webhook deliveries of a task",
}
_PUBLIC = {"openapi.json", "start/health", "billing/stripe/webhook", "profiles/{environment_id}/archive"}
_CHAT_REQUEST = {  # integrations.chat.parse_chat_request
    "type": "object",
    "required": ["model", "messages"],
    "properties": {
        "model": {"type": "string", "enum": ["enigma-browser-1"]},
        "messages": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["role", "content"],
                "properties": {
                    "role": {"type": "string", "enum": ["system", "developer", "user", "assistant"]},
                    "content": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]},
                },
            },
        },
        "stream": {"type": "boolean"},
        "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
        "max_tokens": {"type": "integer", "minimum": 0, "description": "the task's maxOutputTokens (default 2000)"},
        "max_completion_tokens": {"type": "integer", "minimum": 0},
        "reach_out_mode": {"type": "string", "enum": ["off", "guardrail_only", "full"]},
        "n": {"type": "integer", "const": 1},
        "response_format": {"type": "object", "properties": {"type": {"const": "text"}}},
    },
}
_BODIES = {  # of views drf-spectacular cannot read: (description, schema)
    "v1/chat/completions": (
        "OpenAI chat completion request (the messages are the task); temperature, top_p, user, seed, stop and "
        "the like are accepted and ignored",
        _CHAT_REQUEST,
    ),
}
_SETTINGS = {
    "OAS_VERSION": "3.1.0",
    "TITLE": "Enigma API",
    "VERSION": "1.0",
    "DESCRIPTION": "AI-driven browser sessions. Contract: the Enigma/WebRun documentation.",
    "ENUM_NAME_OVERRIDES": {  # choice sets that share a field name get their own names
        "PolicyActionEnum": ["allow", "guardrail", "block"],
        "DomainModeEnum": ["allow_all", "allowlist", "blocklist"],
        "SessionModeEnum": ["default"],
        "EnvironmentStatusEnum": ["empty", "uploading", "ready"],
        "PolicyStatusEnum": ["active", "draft"],
        "TriggerStatusEnum": ["active", "paused"],
        "TaskStatusEnum": ["complete", "guardrail_trigger", "failed", "stopped", "terminated", "active", "pending"],
        "HealthStatusEnum": ["healthy", "unhealthy"],
    },
}
_BEARER = {"type": "http", "scheme": "bearer", "description": "enig_... API key"}
_ERROR = {
    "type": "object",
    "required": ["success", "message", "error", "code"],
    "properties": {
        "success": {"const": False},
        "message": {"type": "string"},
        "error": {"type": "string"},
        "code": {"type": "string", "description": "UPPER_SNAKE (api.md §1.12)"},
        "details": {"type": "object", "description": "parameter: the field that was wrong"},
    },
}


class AutoSchema(SpectacularAutoSchema):
    """drf-spectacular's, with an operationId per path and method (`get_cron_jobs_trigger_id`):
    its own names one list and one detail view of a plain APIView alike."""

    def get_operation_id(self) -> str:
        return _operation_id(self.method, self.path)


def _operation_id(method: str, path: str) -> str:
    return f"{method.lower()}_{re.sub(r'[^0-9a-zA-Z]+', '_', path).strip('_')}"


class ApiKeyScheme(OpenApiAuthenticationExtension):
    """How drf-spectacular names accounts' key authentication: the bearer scheme."""

    target_class = "accounts.authentication.ApiKeyAuthentication"
    name = "bearer"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return _BEARER


def _walk(patterns: list[Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            out += _walk(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            out.append((prefix + str(pattern.pattern), pattern.callback))
    return out


def _summary(obj: Any) -> str:
    doc = (getattr(obj, "__doc__", None) or "").strip()
    return doc.splitlines()[0].rstrip(".") if doc else ""


def api_paths() -> list[tuple[str, list[str], str]]:
    """(OpenAPI path, methods, summary) of every API URL."""
    out = []
    for route, callback in _walk(get_resolver().url_patterns):
        if not route or route.startswith(_NOT_API):
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)
        view_class = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
        if view_class is not None:
            methods = [m for m in _METHODS if hasattr(view_class, m)]
            summary = _summary(view_class)
        else:
            methods = _FUNCTION_VIEW_METHODS.get(path, ["get"])
            summary = _summary(callback)
        out.append((path, methods, _SUMMARIES.get(path) or summary))
    return out


def _operation(path: str, method: str, summary: str) -> dict[str, Any]:
    """A described operation of a plain Django view."""
    params = re.findall(r"{(\w+)}", path)
    op: dict[str, Any] = {
        "parameters": [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}} for p in params],
        "responses": {"200": {"description": 'Success: `{"success": true, ...}`'}},
    }
    if method in ("post", "put", "patch") and path in _BODIES:
        description, schema = _BODIES[path]
        op["requestBody"] = {
            "required": True,
            "description": description,
            "content": {"application/json": {"schema": schema}},
        }
    return op


@functools.cache
def openapi_document() -> dict[str, Any]:
    with patched_settings(_SETTINGS):
        generated = SchemaGenerator().get_schema(request=None, public=True)
    paths: dict[str, Any] = {}
    for path, methods, summary in api_paths():
        described = generated["paths"].get(f"/{path}", {})
        item = paths[f"/{path}"] = {}
        for method in methods:
            op = described.get(method) or _operation(path, method, summary)
            op["summary"] = summary or op.get("summary") or f"{method.upper()} /{path}"
            op["tags"] = [path.split("/")[0]]
            body = op.get("requestBody", {}).get("content", {})
            if "application/json" in body:  # the serializers read JSON (forms reach them as no object)
                op["requestBody"]["content"] = {"application/json": body["application/json"]}
            op["operationId"] = op.get("operationId") or _operation_id(method, path)
            op.pop("security", None)
            if path in _PUBLIC:
                op["security"] = []
            op["responses"]["4XX"] = {
                "description": "Error envelope",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }
            item[method] = op
    components = generated.get("components", {})
    components.setdefault("schemas", {})["Error"] = _ERROR
    components["securitySchemes"] = {"bearer": _BEARER}
    return {**generated, "components": components, "security": [{"bearer": []}], "paths": paths}


def openapi_view(request: HttpRequest) -> JsonResponse:
    """The OpenAPI document of the whole API."""
    return JsonResponse(openapi_document())
