"""The OpenAI-compatible endpoint (api.md §7): `POST /v1/chat/completions` and `GET /v1/models`.

Plain async Django views rather than DRF views, because every answer (errors included) must
be in OpenAI's format and the wait for the agent (seconds to minutes) must hold no thread.

Errors are `{"error": {"message", "type", "code", "param"}}`:

| status | type | code |
|---|---|---|
| 400 | invalid_request_error | invalid_parameter, missing_required_field, invalid_json, ... (`param` names the field) |
| 401 | authentication_error | invalid_api_key |
| 402 | billing_error | insufficient_balance |
| 403 | permission_error | account_deactivated |
| 404 | invalid_request_error | model_not_found (`param: "model"`) |
| 413 | invalid_request_error | payload_too_large |
| 422 | task_error | the task ran and failed: its own code, lower-cased (unsupported_instruction, task_timeout, element_not_found, ...) |
| 422 | guardrail_error | guardrail_triggered: the agent asked for human input, which this endpoint cannot give; the session is terminated |
| 422 | timeout_error | task_wait_timeout (the task outlived maxDuration plus a grace period; terminated) |
| 429 | rate_limit_error | rate_limit_exceeded (10/min per team, `Retry-After`) |
| 503 | service_unavailable | instance_unavailable (no free browser) |

Once a task has run, the answer is never a 5xx: clients retry 5xx (the OpenAI SDKs twice, and
proxies and other SDKs without asking), and every retry would run and bill the task again. A task
that did not complete is a 422 (not 409 or 408, which the SDKs also retry) with
`x-should-retry: false` and the `enigma` object of the task, both at the top level and inside
`error` (where the SDKs expose it, as `APIStatusError.body["enigma"]`). The only 5xx is 503,
answered before any task exists.

Streaming (`stream: true`): a first chunk with `role: "assistant"`, then the agent's progress as
content deltas, one line each (its thoughts, `→ action target` lines and status updates), a blank
line, the answer as one delta, a final chunk with `finish_reason: "stop"` and the `enigma` object,
with `stream_options.include_usage` a usage chunk (`choices: []`), then `data: [DONE]`. An error
after the stream has started is sent as a `data: {"error": ...}` event (the SDKs raise it) and the
stream ends without `[DONE]`. A client that disconnects ends the session, so it is not billed on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from accounts.authentication import ApiPrincipal, authenticate_raw_key, bearer_token
from enigma_site.errors import ApiError
from enigma_site.parsers import json_loads, read_limited
from enigma_site.ratelimit import RateDecision, RateLimited, rate_limit_hit
from sessions_app import services as session_services
from sessions_app.events import events_after, group_name
from sessions_app.models import Task

from . import chat
from .services import asession_abandon, task_reload, task_wait, task_wait_timeout

logger = logging.getLogger(__name__)

KEEPALIVE_S = 10.0
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable",
}


class MissingApiKey(ApiError):
    status_code = 401
    code = "invalid_api_key"
    default_message = "API key required. Provide Authorization: Bearer <api_key>"


class MethodNotAllowed(ApiError):
    status_code = 405
    code = "method_not_allowed"


class TaskError(ApiError):
    """A task ran and did not complete. A 4xx, so that no client retries (and bills) it again."""

    status_code = 422
    error_type = "task_error"


class GuardrailTriggered(TaskError):
    code = "guardrail_triggered"
    error_type = "guardrail_error"


class TaskWaitTimeout(TaskError):
    code = "task_wait_timeout"
    error_type = "timeout_error"
    default_message = "The task did not finish in time; its session was ended"


def error_object(exc: ApiError) -> dict[str, Any]:
    code = "invalid_api_key" if exc.status_code == 401 else exc.code.lower()
    error_type = getattr(exc, "error_type", None) or ERROR_TYPES.get(exc.status_code, "api_error")
    error = {
        "message": exc.message,
        "type": error_type,
        "code": code,
        "param": chat.openai_param(exc.details.get("parameter")),
    }
    if "enigma" in exc.extra:
        error["enigma"] = exc.extra["enigma"]
    return {"error": error}


def error_response(exc: ApiError, rate: RateDecision | None = None) -> JsonResponse:
    body = error_object(exc)
    if "enigma" in exc.extra:
        body["enigma"] = exc.extra["enigma"]
    response = JsonResponse(body, status=exc.status_code)
    if exc.status_code == 401:
        response["WWW-Authenticate"] = "Bearer"
    if isinstance(exc, TaskError) or exc.status_code == 402:
        response["x-should-retry"] = "false"
    _rate_headers(response, rate)
    return response


def _rate_headers(response: HttpResponseBase, rate: RateDecision | None) -> None:
    for name, value in (rate.headers() if rate else {}).items():
        response[name] = value


@database_sync_to_async
def _authenticate(request: HttpRequest) -> ApiPrincipal:
    header = request.headers.get("Authorization", "")
    if not header.strip():
        raise MissingApiKey()
    token = bearer_token(header)
    if token is None:
        raise MissingApiKey("Invalid or revoked API key")
    return authenticate_raw_key(token)


@database_sync_to_async
def task_error(task: Task) -> TaskError:
    """The error of a task that did not complete (failed, asks a human, or still not settled)."""
    extra = {"enigma": chat.extension(task.session_id, task)}  # its cost: reads prices
    if not task.is_settled:
        return TaskWaitTimeout(extra=extra)
    if task.state == Task.State.GUARDRAIL:
        return GuardrailTriggered(f"Guardrail triggered: {task.guardrail_question}", extra=extra)
    message = task.error or f"Task ended without a result ({task.state})"
    return TaskError(message, code=(task.code or task.state).lower(), extra=extra)


@csrf_exempt
async def models(request: HttpRequest) -> HttpResponse:
    """GET /v1/models: the one model (api.md §1.7); authenticated, not rate limited."""
    try:
        if request.method != "GET":
            raise MethodNotAllowed(f"Method {request.method} not allowed")
        await _authenticate(request)
    except ApiError as exc:
        return error_response(exc)
    return JsonResponse(chat.models_body())


@csrf_exempt
async def chat_completions(request: HttpRequest) -> HttpResponseBase:
    """POST /v1/chat/completions: run the conversation as one task in a new, self-ending session."""
    rate: RateDecision | None = None
    try:
        if request.method != "POST":
            raise MethodNotAllowed(f"Method {request.method} not allowed")
        principal = await _authenticate(request)
        rate = await sync_to_async(rate_limit_hit, thread_sensitive=False)(
            team_id=principal.team.pk, scope="chat-completions"
        )
        if rate is not None and not rate.allowed:
            raise RateLimited()
        raw = read_limited(request)
        body = json_loads(raw) if raw else None
        parsed = chat.parse_chat_request(body)
        session, task = await database_sync_to_async(session_services.session_start)(
            team=principal.team, api_key=principal.api_key, spec=parsed.spec
        )
    except ApiError as exc:
        return error_response(exc, rate)
    assert task is not None
    created = int(time.time())
    team_id = principal.team.pk
    if parsed.stream:
        response: HttpResponseBase = StreamingHttpResponse(
            _stream(team_id=team_id, task=task, created=created, include_usage=parsed.include_usage),
            content_type="text/event-stream",
        )
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"
    else:
        response = await _complete(team_id=team_id, task=task, created=created)
    _rate_headers(response, rate)
    return response


async def _complete(*, team_id: int, task: Task, created: int) -> HttpResponse:
    finished = False
    try:
        task = await task_wait(
            team_id=team_id, session_id=task.session_id, task_id=task.pk, timeout=task_wait_timeout(task)
        )
        finished = task.state == Task.State.COMPLETED
        if finished:
            body = await database_sync_to_async(chat.completion_body)(task, created=created)  # prices: DB
            return JsonResponse(body)
        return error_response(await task_error(task))
    finally:
        if not finished:  # also when the client went away (the view is cancelled)
            await asyncio.shield(asession_abandon(team_id=team_id, session_id=task.session_id))


def _sse(data: dict[str, Any] | str) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {text}\n\n".encode()


async def _stream(*, team_id: int, task: Task, created: int, include_usage: bool) -> AsyncIterator[bytes]:
    """SSE chunks of one completion; progress comes from the session's event group and log."""
    session_id, task_id = task.session_id, task.pk
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(group_name(session_id), channel)
    seen: set[int] = set()
    finished = False
    loop = asyncio.get_running_loop()
    deadline = loop.time() + task_wait_timeout(task)
    try:
        yield _sse(chat.chunk(task, created=created, delta={"role": "assistant", "content": ""}))
        # Events stored before we joined the group come from the log; later ones from the group.
        backlog = await database_sync_to_async(events_after)(session_id=session_id, after=0)
        pending = [(e["id"], e["name"], e["data"]) for e in backlog]
        check = True  # whether the task row may have changed: at start, on its end events, on idle
        progressed, last_text = False, ""
        while True:
            for event_id, name, payload in pending:
                if event_id in seen:
                    continue
                seen.add(event_id)
                check = check or chat.is_end_event(name, payload, task_id)
                text = chat.progress_text(payload, task_id) if name == "message" else None
                if text and text != last_text:  # the runner and the agent may both announce the start
                    progressed, last_text = True, text
                    yield _sse(chat.chunk(task, created=created, delta={"content": text}))
            pending = []
            if check:
                task = await task_reload(team_id=team_id, session_id=session_id, task_id=task_id)
                check = False
            if task.is_settled or loop.time() >= deadline:
                break
            try:
                message = await asyncio.wait_for(
                    layer.receive(channel), timeout=min(KEEPALIVE_S, max(0.1, deadline - loop.time()))
                )
            except TimeoutError:
                # Idle: re-read the log too, in case a group message was dropped (full channel).
                check = True
                yield b": keep-alive\n\n"
                pending = [
                    (e["id"], e["name"], e["data"])
                    for e in await database_sync_to_async(events_after)(
                        session_id=session_id, after=max(seen, default=0)
                    )
                ]
                continue
            pending = [(message["id"], message["name"], message["payload"])]
        if task.state != Task.State.COMPLETED:
            yield _sse(error_object(await task_error(task)))
            return
        finished = True
        answer = ("\n" if progressed else "") + task.result_message
        yield _sse(chat.chunk(task, created=created, delta={"content": answer}))
        enigma = await database_sync_to_async(chat.extension)(session_id, task)
        yield _sse(chat.chunk(task, created=created, delta={}, finish_reason="stop", enigma=enigma))
        if include_usage:
            final = chat.chunk(task, created=created, delta={}, usage=chat.usage(task))
            final["choices"] = []
            yield _sse(final)
        yield _sse("[DONE]")
    finally:
        await layer.group_discard(group_name(session_id), channel)
        if not finished:
            await asyncio.shield(asession_abandon(team_id=team_id, session_id=session_id))
