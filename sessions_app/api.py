"""REST endpoints of sessions and tasks (api.md §1.2-§1.6 plus the listing additions).

run-task and send-message(newTask) wait up to ENIGMA_INLINE_WAIT_S for the task. The wait is
async (a Redis notification per task), so waiting requests hold no thread: the DRF view does the
sync part, then `inline_wait` awaits outside of it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import OpenApiParameter, PolymorphicProxySerializer, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from billing.money import micros_to_usd
from billing.selectors import team_balance_micros
from enigma_site.api import BIGINT_MAX, ApiView, int_param, ok, paginate, public_base_url, timestamp
from enigma_site.errors import InvalidParameter
from enigma_site.serializers import validated

from . import registry, selectors, services
from . import serializers as shapes
from .cdp import cdp_token_create, connect_url
from .events import events_after, wait_task_settled
from .models import BrowserSession, Task
from .realtime import sio
from .schema import parse_message, parse_session_body
from .streaming import viewer_url, whep_url


def poll_url(request: HttpRequest | Request, task: Task) -> str:
    return f"{public_base_url(request)}/task/{task.session_id}/{task.pk}"


def start_session_body(request: Request, session: BrowserSession, task: Task | None) -> dict[str, Any]:
    base = public_base_url(request)
    body: dict[str, Any] = {
        "sessionId": session.pk,
        "socketURL": base,
        "streaming": {
            "webRTCURL": whep_url(base_url=base, session_id=session.pk),
            "webViewURL": viewer_url(base_url=base, session_id=session.pk, control=True),
            "dimensions": {"width": 1024, "height": 600},
        },
        "initialPrompt": session.config.get("initialPrompt", ""),
        "expiresIn": int(settings.ENIGMA_INACTIVITY_TIMEOUT_S * 1000),
        "balance": micros_to_usd(team_balance_micros(team=session.team_id)),
        "message": "Connect to instance using sessionId in auth",
    }
    if task is not None:
        body["taskId"] = task.pk
        body["pollUrl"] = poll_url(request, task)
    if session.config.get("cdp"):  # raw CDP access (issue 16)
        body["connectUrl"] = connect_url(base_url=base, token=cdp_token_create(session_id=session.pk)[0])
    return body


class StartSessionApi(ApiView):
    rate_scope = "start-session"

    @extend_schema(request=shapes.StartSessionSerializer, responses={200: shapes.StartSessionResponseSerializer})
    def post(self, request: Request) -> Response:
        spec = parse_session_body(request.data, require_task=False)
        session, task = services.session_start(
            team=self.principal.team, api_key=self.principal.api_key, spec=spec, base_url=public_base_url(request)
        )
        return ok(start_session_body(request, session, task))


class RunTaskApi(ApiView):
    rate_scope = "run-task"

    @extend_schema(request=shapes.RunTaskSerializer, responses={200: shapes.TaskResponseSerializer})
    def post(self, request: Request) -> Response:
        spec = parse_session_body(request.data, require_task=True)
        session, task = services.session_start(
            team=self.principal.team, api_key=self.principal.api_key, spec=spec, base_url=public_base_url(request)
        )
        assert task is not None
        response = ok({"sessionId": session.pk, "taskId": task.pk})
        response.wait_task = (self.principal.team.pk, session.pk, task.pk)  # type: ignore[attr-defined]
        return response


class SendMessageApi(ApiView):
    rate_scope = "send-message"

    @extend_schema(
        request=shapes.SendMessageSerializer,
        responses={
            200: PolymorphicProxySerializer(
                component_name="SendMessageAnswer",
                resource_type_field_name=None,
                serializers=[shapes.SendMessageResponseSerializer, shapes.TaskResponseSerializer],
            )
        },
    )
    def post(self, request: Request) -> Response:
        data = validated(shapes.SendMessageSerializer(data=request.data))
        session = selectors.session_get(team=self.principal.team, session_id=data["sessionId"])
        message = parse_message(data["message"])
        task = services.session_message(session=session, message=message)
        if task is None:
            return ok(message="Message sent successfully")
        response = ok({"sessionId": session.pk, "taskId": task.pk})
        response.wait_task = (self.principal.team.pk, session.pk, task.pk)  # type: ignore[attr-defined]
        return response


class TaskPollApi(ApiView):
    @extend_schema(responses={200: shapes.TaskResponseSerializer})
    def get(self, request: Request, session_id: str, task_id: str) -> Response:
        task = selectors.task_get(team=self.principal.team, session_id=session_id, task_id=task_id)
        body = selectors.task_response(task, poll_url=poll_url(request, task))
        return Response(body)


class SessionListApi(ApiView):
    @extend_schema(parameters=[shapes.SessionListQuerySerializer], responses={200: shapes.SessionListSerializer})
    def get(self, request: Request) -> Response:
        state = request.query_params.get("state")
        if state and state not in BrowserSession.State.values:
            raise InvalidParameter(
                "state", "Invalid parameter 'state': must be one of " + ", ".join(BrowserSession.State.values)
            )
        rows, pagination = paginate(
            request, selectors.session_list(team=self.principal.team, state=state), max_limit=100
        )
        # `pages`: this list's older name of totalPages, kept for its clients
        return ok(
            sessions=[selectors.session_summary(s) for s in rows],
            pagination={**pagination, "pages": pagination["totalPages"]},
        )


class SessionDetailApi(ApiView):
    @extend_schema(responses={200: shapes.SessionDetailSerializer})
    def get(self, request: Request, session_id: str) -> Response:
        session = selectors.session_get(team=self.principal.team, session_id=session_id)
        return ok(selectors.session_detail(session, base_url=public_base_url(request)))


class SessionEventsApi(ApiView):
    @extend_schema(
        parameters=[OpenApiParameter("after", int, description="the last event id seen (default 0)")],
        responses={200: shapes.SessionEventsSerializer},
    )
    def get(self, request: Request, session_id: str) -> Response:
        session = selectors.session_get(team=self.principal.team, session_id=session_id)
        after = int_param(request, "after", 0, low=0, high=BIGINT_MAX)
        events = events_after(session_id=session.pk, after=after)
        return ok(events=events, lastEventId=events[-1]["id"] if events else after)


class HealthApi(ApiView):
    authentication_classes: list[Any] = []
    permission_classes: list[Any] = []

    @extend_schema(responses={200: shapes.HealthSerializer, 503: shapes.HealthSerializer})
    def get(self, request: Request) -> Response:
        problems: list[str] = []
        try:
            BrowserSession.objects.exists()
        except Exception:
            problems.append("database")
        workers: list[registry.WorkerInfo] = []
        try:
            workers = registry.live_workers()
        except Exception:
            problems.append("redis")
        capacity = sum(w.capacity for w in workers)
        in_use = 0
        if "database" not in problems:
            in_use = BrowserSession.objects.filter(state__in=BrowserSession.LIVE_STATES).count()
        if "redis" not in problems and not workers:
            problems.append("workers")
        free = max(0, capacity - in_use)
        if "redis" not in problems and workers and free == 0:
            problems.append("browser capacity")
        body: dict[str, Any] = {
            "success": not problems,
            "status": "healthy" if not problems else "unhealthy",
            "instancesAvailable": free > 0,
            "instanceCount": free,
            "workers": len(workers),
            "capacity": capacity,
            "inUse": in_use,
            "openContexts": sum(w.contexts for w in workers),
            "timestamp": timestamp(timezone.now()),
        }
        if problems:
            message = "Unavailable: " + ", ".join(problems)
            body.update(
                {"message": message, "error": message, "code": "SERVICE_UNAVAILABLE", "details": {"down": problems}}
            )
            return Response(body, status=503)
        return Response(body)


def _waiting_view(drf_view: Callable[..., Any]) -> Callable[..., Any]:
    @csrf_exempt
    async def view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = await sync_to_async(drf_view)(request, *args, **kwargs)
        wait = getattr(response, "wait_task", None)
        if wait is None:
            return response
        team_id, session_id, task_id = wait
        await wait_task_settled(task_id, settings.ENIGMA_INLINE_WAIT_S)

        def body() -> dict[str, Any]:
            task = selectors.task_get(team=team_id, session_id=session_id, task_id=task_id)
            return selectors.task_response(task, poll_url=poll_url(request, task), inline=True)

        final = JsonResponse(await sync_to_async(body)(), status=200)
        for header in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"):
            if header in response:
                final[header] = response[header]
        return final

    view.cls = drf_view.cls  # type: ignore[attr-defined]  # so /openapi.json finds the DRF view
    view.initkwargs = drf_view.initkwargs  # type: ignore[attr-defined]
    return view


class ActiveSocketsApi(ApiView):
    """G1's `GET /start/active-sockets`: ids of the caller's team's Socket.IO connections open
    now (an API key is required: socket ids of other tenants are none of its business)."""

    @extend_schema(responses={200: shapes.ActiveSocketsSerializer})
    def get(self, request: Request) -> Response:
        sockets = sio.active_sockets(team_id=self.principal.team.pk)
        return ok(sockets=sockets, count=len(sockets), timestamp=timestamp(timezone.now()))


start_session = StartSessionApi.as_view()
run_task = _waiting_view(RunTaskApi.as_view())
send_message = _waiting_view(SendMessageApi.as_view())
task_poll = TaskPollApi.as_view()
session_list = SessionListApi.as_view()
session_detail = SessionDetailApi.as_view()
session_events = SessionEventsApi.as_view()
health = HealthApi.as_view()
active_sockets = ActiveSocketsApi.as_view()
