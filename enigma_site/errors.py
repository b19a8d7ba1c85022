"""One error envelope for every API error (spec README §2).

`{"success": false, "message": m, "error": m, "code": "UPPER_SNAKE", "details": {...}}`
"""

from __future__ import annotations

import logging
from typing import Any

import redis.exceptions
from django import db
from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation, TooManyFieldsSent, TooManyFilesSent
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response

logger = logging.getLogger(__name__)

API_PREFIXES = (
    "/start/",
    "/task/",
    "/sessions",
    "/v1/",
    "/account",
    "/files",
    "/environments",
    "/profiles",
    "/cron-jobs",
    "/policies",
    "/mcp",
    "/api/",
)


class ApiError(Exception):
    """A domain error with the HTTP status and code the contract names."""

    status_code = 400
    code = "BAD_REQUEST"
    default_message = "Bad request"

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        status_code: int | None = None,
        details: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)
        if code:
            self.code = code
        if status_code:
            self.status_code = status_code
        self.details = details or {}
        self.extra = extra or {}


class InvalidParameter(ApiError):
    code = "INVALID_PARAMETER"

    def __init__(self, parameter: str, message: str, **details: Any) -> None:
        super().__init__(message, details={"parameter": parameter, **details})


class MissingField(ApiError):
    code = "MISSING_REQUIRED_FIELD"

    def __init__(self, field: str, message: str | None = None) -> None:
        super().__init__(
            message or f"Missing required field: {field}",
            details={"field": field, "parameter": field},
        )


class NotFound(ApiError):
    status_code = 404
    code = "NOT_FOUND"
    default_message = "Not found"


class ServiceUnavailable(ApiError):
    status_code = 503
    code = "INSTANCE_UNAVAILABLE"
    default_message = "No available instances."


class PayloadTooLarge(ApiError):
    status_code = 413
    code = "PAYLOAD_TOO_LARGE"

    def __init__(self) -> None:
        limit = int(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
        super().__init__(f"Request body is larger than {limit} bytes", details={"limit": limit})


def request_refusal(exc: Exception) -> ApiError | None:
    """The 4xx for Django's own refusals of a request (a body too big, too many form fields)."""
    if isinstance(exc, RequestDataTooBig):
        return PayloadTooLarge()
    if isinstance(exc, (TooManyFieldsSent, TooManyFilesSent)):
        return ApiError(str(exc), code="TOO_MANY_FIELDS")
    if isinstance(exc, SuspiciousOperation):
        return ApiError("Bad request")
    return None


def error_body(
    status_code: int, code: str, message: str, details: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {"success": False, "message": message, "error": message, "code": code}
    body["details"] = details or {}
    body.update(extra)
    return body


class Code(str):
    """A ValidationError code that also carries extra `details` of the envelope (`value`,
    `min`, `max`); DRF keeps a code object as it is while it nests errors."""

    details: dict[str, Any]

    def __new__(cls, code: str, **details: Any) -> Code:
        self = super().__new__(cls, code)
        self.details = details
        return self


def invalid(message: str, **details: Any) -> exceptions.ValidationError:
    """A field's ValidationError: `Invalid parameter '<path>': <message>`, with `details`."""
    return exceptions.ValidationError(message, code=Code("invalid", **details))


def _child(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    if key == "non_field_errors":
        return path
    return f"{path}.{key}" if path else str(key)


def _first_error(detail: Any, path: str = "") -> tuple[str, Any]:
    """Return (parameter path, error) of the first error in a DRF error structure: dicts name
    fields (`task.maxDuration`), integer keys and lists index arrays (`avoidDomains[0]`)."""
    while True:
        if isinstance(detail, dict):
            key, detail = next(((k, v) for k, v in detail.items() if v), (None, ""))
            if key is None:
                return path, ""
            path = _child(path, key)
        elif isinstance(detail, list):
            if any(isinstance(item, (dict, list)) for item in detail):
                # a ListSerializer's: one entry per item, empty for the valid ones
                index = next((i for i, item in enumerate(detail) if item), 0)
                path, detail = f"{path}[{index}]", detail[index]
            else:  # a field's messages
                detail = next((item for item in detail if item), "")
        else:
            return path, detail


REQUIRED = "This field is required."


def validation_error(detail: Any, prefix: str = "") -> ApiError:
    """The one translation of serializer errors to the envelope: the first error, its field
    path (under `prefix`) in `details.parameter`, and the message by its code:

    * `required`: 400 MISSING_REQUIRED_FIELD, "Missing required field: <path>" (or the
      field's own message);
    * `unknown`: "Unknown field '<path>'";
    * `either` (the error text is the other name): "Give either '<other>' or '<path>', not both";
    * `message`: the error text is the whole message;
    * anything else: "Invalid parameter '<path>': <text>" (no path: the text alone).
    """
    path, error = _first_error(detail, prefix)
    code = getattr(error, "code", None)
    text = str(error)
    extra: dict[str, Any] = dict(getattr(code, "details", {}))
    if code == "required":
        return MissingField(path, None if text == REQUIRED else text)
    if code == "unknown":
        return InvalidParameter(path, f"Unknown field '{path}'")
    if code == "either":
        other = f"{path.rsplit('.', 1)[0]}.{text}" if "." in path else text
        return InvalidParameter(path, f"Give either '{other}' or '{path}', not both")
    if code == "message" or not path:
        return InvalidParameter(path, text, **extra) if path else ApiError(text, code="INVALID_PARAMETER")
    return InvalidParameter(path, f"Invalid parameter '{path}': {text}", **extra)


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    headers: dict[str, str] = {}
    if isinstance(exc, ApiError):
        body = error_body(exc.status_code, exc.code, exc.message, exc.details, **exc.extra)
        return Response(body, status=exc.status_code)
    if isinstance(exc, exceptions.ValidationError):
        return api_exception_handler(validation_error(exc.detail), context)
    if isinstance(exc, exceptions.NotAuthenticated):
        message = "API key required. Provide Authorization: Bearer <api_key>"
        return Response(error_body(401, "UNAUTHORIZED", message), status=401, headers={"WWW-Authenticate": "Bearer"})
    if isinstance(exc, exceptions.APIException):
        code = {
            400: "BAD_REQUEST",
            401: "UNAUTHORIZED",
            403: "FORBIDDEN",
            404: "NOT_FOUND",
            405: "METHOD_NOT_ALLOWED",
            406: "NOT_ACCEPTABLE",
            415: "UNSUPPORTED_MEDIA_TYPE",
            429: "RATE_LIMIT_EXCEEDED",
        }.get(exc.status_code, "ERROR")
        if isinstance(exc, exceptions.ParseError):
            code = "INVALID_JSON"
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header  # type: ignore[attr-defined]
        return Response(error_body(exc.status_code, code, str(exc.detail)), status=exc.status_code, headers=headers)
    if isinstance(exc, Http404):
        return Response(error_body(404, "NOT_FOUND", "Not found"), status=404)
    refusal = request_refusal(exc)
    if refusal is not None:
        return api_exception_handler(refusal, context)
    down = dependency_down(exc)
    if down:
        logger.warning("%s is unavailable: %s", down, exc)
        return Response(
            error_body(503, "SERVICE_UNAVAILABLE", f"Service temporarily unavailable ({down})", {"down": [down]}),
            status=503,
            headers={"Retry-After": "5"},
        )
    logger.exception("Unhandled API error")
    return Response(error_body(500, "INTERNAL_ERROR", "Internal server error"), status=500)


def dependency_down(exc: BaseException) -> str:
    """Name the dependency whose outage raised `exc` ("redis", "database"), or ""."""
    if isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
        return "redis"
    if isinstance(exc, db.OperationalError) and (
        "locked" in str(exc) or type(exc.__cause__).__module__.startswith("psycopg")
    ):
        return "database"  # PostgreSQL unreachable, or SQLite busy; not a schema bug
    return ""


def is_api_path(path: str) -> bool:
    return path.startswith(API_PREFIXES)


def handler404(request: HttpRequest, exception: Exception | None = None) -> Any:
    if is_api_path(request.path):
        return JsonResponse(error_body(404, "NOT_FOUND", f"No endpoint at {request.path}"), status=404)
    from django.views.defaults import page_not_found

    return page_not_found(request, exception or Http404())


def handler500(request: HttpRequest) -> Any:
    if is_api_path(request.path):
        return JsonResponse(
            error_body(500, "INTERNAL_ERROR", "Internal server error"),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    from django.views.defaults import server_error

    return server_error(request)
