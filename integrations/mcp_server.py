"""The MCP server (api.md §5.13): six tools over Streamable HTTP at /mcp, on the official `mcp` SDK.

Authentication is an API key, as a Bearer header or in the path (`/mcp/<KEY>`, and
`/mcp/<KEY>:<ENVIRONMENT_ID>` as documented; an `apiKey` query parameter also works). The tools
call the same services and validation as the REST endpoints they mirror, count against the same
rate limits (browser_task: run-task; create_session: start-session; the session tools:
send-message) and are billed the same way, since the session runner meters every session.

| tool | mirrors | waits |
|---|---|---|
| browser_task | POST /start/run-task | for the result (the task's maxDuration plus a grace period) |
| create_session | POST /start/start-session | no |
| send_task_to_session | send-message newTask | for the result, like browser_task |
| get_task_status | GET /task/:sessionId/:taskId | no |
| control_session | send-message state | no |
| take_over_session | send-message interaction takeOverControl / releaseControl | no |

A tool result is the REST body as JSON text and as structured content; an error is the REST error
body (`success: false`, `code`, `details`) with `isError: true`.

The SDK's session manager runs in stateless mode (any web process can answer any request) and is
started on the first request, because Daphne does not run ASGI lifespan events.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import parse_qs, unquote

from channels.db import database_sync_to_async
from django.conf import settings
from django.http.request import split_domain_port, validate_host
from mcp.server.mcpserver import MCPServer
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import CallToolResult, TextContent
from pydantic import Field

from accounts.authentication import ApiPrincipal, authenticate_raw_key, bearer_token
from enigma_site.errors import ApiError, InvalidParameter, error_body
from enigma_site.ratelimit import RateLimited, rate_limit_hit
from sessions_app import selectors
from sessions_app import services as session_services
from sessions_app.models import BrowserSession, Task
from sessions_app.schema import parse_message, parse_session_body
from sessions_app.streaming import viewer_url

from .services import task_wait, task_wait_timeout


@dataclass(frozen=True)
class Caller:
    principal: ApiPrincipal
    environment_id: str | None
    base_url: str


# Set per HTTP request by the ASGI wrapper; the SDK runs each request's handlers in tasks
# spawned from it, which inherit the context.
_caller: contextvars.ContextVar[Caller] = contextvars.ContextVar("enigma_mcp_caller")

mcp = MCPServer(
    "enigma",
    instructions="Rent an AI-driven browser: run a task on the web (browser_task), or keep a session "
    "and send it several tasks (create_session, send_task_to_session, get_task_status, "
    "control_session, take_over_session).",
)

Prompt = Annotated[str | None, Field(description="What the agent should do, in plain language")]
TaskDetails = Annotated[str | None, Field(description="Older name of prompt")]
StartingUrl = Annotated[str | None, Field(description="URL to open before the agent starts")]
MaxDuration = Annotated[int | None, Field(description="Time limit of the task in ms (1000-300000, default 300000)")]
ReachOutMode = Annotated[str | None, Field(description="off, guardrail_only (default) or full")]
SessionId = Annotated[str, Field(description="The session's id")]


def _result(body: dict[str, Any], *, error: bool = False) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=json.dumps(body))], structured_content=body, is_error=error
    )


def _error(exc: ApiError) -> CallToolResult:
    return _result(error_body(exc.status_code, exc.code, exc.message, exc.details, **exc.extra), error=True)


def _count(caller: Caller, scope: str) -> None:
    decision = rate_limit_hit(team_id=caller.principal.team.pk, scope=scope)
    if decision is not None and not decision.allowed:
        raise RateLimited(details={"retryAfter": decision.retry_after})


def _streaming_url(caller: Caller, session: BrowserSession) -> str:
    return viewer_url(base_url=caller.base_url, session_id=session.pk, control=True)


def _task_body(caller: Caller, task: Task) -> dict[str, Any]:
    """The poll body of the REST API, with the MCP reference's names: status "completed" and a
    text `result` once done, status "active" while it runs."""
    body = selectors.task_response(task, poll_url=f"{caller.base_url}/task/{task.session_id}/{task.pk}")
    if task.state == Task.State.COMPLETED:
        body["status"] = "completed"
        body["result"] = task.result_message
    return body


def _task_fields(**fields: Any) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if value is not None}


async def _call(fn: Callable[[Caller], Any]) -> CallToolResult:
    """Run a tool body (sync, in a thread) for the current caller; ApiErrors become error results.

    A body may return a Task to wait for; the result is then its body once settled.
    """
    caller = _caller.get()
    try:
        out = await database_sync_to_async(fn)(caller)
        if isinstance(out, Task):
            task = await task_wait(
                team_id=caller.principal.team.pk,
                session_id=out.session_id,
                task_id=out.pk,
                timeout=task_wait_timeout(out),
            )
            out = await database_sync_to_async(_task_body)(caller, task)
            return _result(out, error=not out.get("success", True) and task.is_settled)
        return _result(out)
    except ApiError as exc:
        return _error(exc)


@mcp.tool(description="Run one task in a new browser session that ends after it, and return its result.")
async def browser_task(
    prompt: Prompt = None,
    taskDetails: TaskDetails = None,
    startingUrl: StartingUrl = None,
    maxDuration: MaxDuration = None,
    reach_out_mode: ReachOutMode = None,
) -> CallToolResult:
    def start(caller: Caller) -> Task:
        _count(caller, "run-task")
        # Flat (G1) fields, so a validation error names the tool's own argument.
        body = _task_fields(
            prompt=prompt,
            taskDetails=taskDetails,
            startingUrl=startingUrl,
            maxDuration=maxDuration,
            reachOutMode=reach_out_mode,
            environmentId=caller.environment_id,
        )
        spec = parse_session_body(body, require_task=True)
        _session, task = session_services.session_start(
            team=caller.principal.team, api_key=caller.principal.api_key, spec=spec, base_url=caller.base_url
        )
        assert task is not None
        return task

    return await _call(start)


@mcp.tool(description="Start a browser session (optionally with a first task) to send tasks to later.")
async def create_session(
    prompt: Prompt = None,
    taskDetails: TaskDetails = None,
    startingUrl: StartingUrl = None,
    maxDuration: MaxDuration = None,
    reach_out_mode: ReachOutMode = None,
) -> CallToolResult:
    def start(caller: Caller) -> dict[str, Any]:
        _count(caller, "start-session")
        body = _task_fields(
            prompt=prompt,
            taskDetails=taskDetails,
            startingUrl=startingUrl,
            maxDuration=maxDuration,
            reachOutMode=reach_out_mode,
            environmentId=caller.environment_id,
        )
        spec = parse_session_body(body, require_task=False)
        session, task = session_services.session_start(
            team=caller.principal.team, api_key=caller.principal.api_key, spec=spec, base_url=caller.base_url
        )
        out: dict[str, Any] = {
            "success": True,
            "sessionId": session.pk,
            "message": "Session created successfully. You can now send tasks to this session.",
            "expiresIn": int(settings.ENIGMA_INACTIVITY_TIMEOUT_S * 1000),
            "streamingUrl": _streaming_url(caller, session),
        }
        if task is not None:
            out.update(taskId=task.pk, pollUrl=f"{caller.base_url}/task/{session.pk}/{task.pk}")
        return out

    return await _call(start)


@mcp.tool(description="Send a task to a session; waits for and returns its result.")
async def send_task_to_session(
    sessionId: SessionId,
    prompt: Prompt = None,
    taskDetails: TaskDetails = None,
    terminateOnCompletion: Annotated[bool, Field(description="End the session after this task")] = False,
    startingUrl: StartingUrl = None,
    maxDuration: MaxDuration = None,
) -> CallToolResult:
    def submit(caller: Caller) -> Task:
        _count(caller, "send-message")
        session = selectors.session_get(team=caller.principal.team, session_id=sessionId)
        message = parse_message(
            {
                "actionType": "newTask",
                **_task_fields(
                    prompt=prompt,
                    taskDetails=taskDetails,
                    startingUrl=startingUrl,
                    maxDuration=maxDuration,
                    terminateOnCompletion=terminateOnCompletion,
                ),
            }
        )
        task = session_services.session_message(session=session, message=message)
        assert task is not None
        return task

    return await _call(submit)


@mcp.tool(description="The status of a task, with its result once it has finished.")
async def get_task_status(
    sessionId: SessionId, taskId: Annotated[str, Field(description="The task's id")]
) -> CallToolResult:
    def read(caller: Caller) -> dict[str, Any]:
        return _task_body(caller, selectors.task_get(team=caller.principal.team, session_id=sessionId, task_id=taskId))

    return await _call(read)


@mcp.tool(description="Pause or resume the agent, stop its current task, or terminate the session.")
async def control_session(
    sessionId: SessionId,
    action: Annotated[str, Field(description="pause, resume, stop or terminate")],
) -> CallToolResult:
    def control(caller: Caller) -> dict[str, Any]:
        _count(caller, "send-message")
        session = selectors.session_get(team=caller.principal.team, session_id=sessionId)
        message = parse_message({"actionType": "state", "newState": action})
        session_services.session_message(session=session, message=message)
        return {"success": True, "message": "Session control command sent successfully", "action": action}

    return await _call(control)


_TAKEOVER = {
    "takeover": ("takeOverControl", "Manual control enabled. Agent paused."),
    "release": ("releaseControl", "Manual control released. Agent resumed."),
}


@mcp.tool(description="Take manual control of the browser (the agent pauses) or give it back.")
async def take_over_session(
    sessionId: SessionId,
    action: Annotated[str, Field(description="takeover or release")],
) -> CallToolResult:
    def take_over(caller: Caller) -> dict[str, Any]:
        _count(caller, "send-message")
        if action not in _TAKEOVER:
            raise InvalidParameter("action", "Invalid parameter 'action': must be takeover or release")
        kind, text = _TAKEOVER[action]
        session = selectors.session_get(team=caller.principal.team, session_id=sessionId)
        message = parse_message({"actionType": "interaction", "action": {"type": kind}})
        session_services.session_message(session=session, message=message)
        return {"success": True, "message": text, "action": action, "streamingUrl": _streaming_url(caller, session)}

    return await _call(take_over)


class McpApp:
    """ASGI app for /mcp: authenticate, then hand the request to the SDK's session manager."""

    def __init__(self, server: MCPServer[Any]) -> None:
        # The SDK's own Host check only knows localhost; Django's ALLOWED_HOSTS is checked in __call__.
        security = TransportSecuritySettings(enable_dns_rebinding_protection=False)
        server.streamable_http_app(stateless_http=True, transport_security=security)  # creates the manager
        self.manager: StreamableHTTPSessionManager = server.session_manager
        self._ready: asyncio.Future[None] | None = None
        self._runner: asyncio.Task[None] | None = None

    async def _ensure_running(self) -> None:
        if self._ready is None:
            self._ready = asyncio.get_running_loop().create_future()
            self._runner = asyncio.create_task(self._run(self._ready))
        await asyncio.shield(self._ready)

    async def _run(self, ready: asyncio.Future[None]) -> None:
        try:
            async with self.manager.run():
                ready.set_result(None)
                await asyncio.Event().wait()  # for the life of the process
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            raise

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        domain, _port = split_domain_port(headers.get("host", ""))
        if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
            await _json(send, 400, error_body(400, "BAD_REQUEST", "Invalid Host header"))
            return
        rest = unquote(scope["path"][len("/mcp") :].strip("/"))
        if rest == "sse" or "/" in rest:
            await _json(send, 404, error_body(404, "NOT_FOUND", "Use Streamable HTTP at /mcp or /mcp/<API_KEY>"))
            return
        path_key, _, environment_id = rest.partition(":")
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        raw = bearer_token(headers.get("authorization", "")) or path_key or (query.get("apiKey") or [""])[0]
        try:
            if not raw:
                raise ApiError(
                    "API key required. Provide Authorization: Bearer <api_key>", code="UNAUTHORIZED", status_code=401
                )
            principal = await database_sync_to_async(authenticate_raw_key)(raw)
        except ApiError as exc:
            await _json(send, exc.status_code, error_body(exc.status_code, exc.code, exc.message, exc.details))
            return
        await self._ensure_running()
        base_url = settings.ENIGMA_PUBLIC_URL or f"{scope.get('scheme', 'http')}://{headers.get('host', 'localhost')}"
        token = _caller.set(Caller(principal=principal, environment_id=environment_id or None, base_url=base_url))
        try:
            await self.manager.handle_request(scope, receive, send)
        finally:
            _caller.reset(token)


async def _json(send: Any, status: int, body: dict[str, Any]) -> None:
    headers = [(b"content-type", b"application/json")]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})


asgi_app = McpApp(mcp)
