"""REST endpoints: triggers, the `/cron-jobs` of api.md §5.8, and their runs."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from enigma_site.api import ApiView, object_body, ok, paginate, timestamp
from enigma_site.serializers import SuccessMessageSerializer

from . import selectors, services
from . import serializers as shapes
from .tasks import run_trigger

RUNS_MAX_LIMIT = 50


class TriggerListCreateApi(ApiView):
    @extend_schema(responses={200: shapes.TriggerListSerializer})
    def get(self, request: Request) -> Response:
        return ok(cronJobs=[selectors.trigger_body(t) for t in selectors.trigger_list(team=self.principal.team)])

    @extend_schema(request=shapes.TriggerInputSerializer, responses={201: shapes.TriggerResponseSerializer})
    def post(self, request: Request) -> Response:
        trigger = services.trigger_create(team=self.principal.team, data=object_body(request.data))
        return ok(cronJob=selectors.trigger_body(trigger), status=201)


class TriggerDetailApi(ApiView):
    @extend_schema(responses={200: shapes.TriggerDetailSerializer})
    def get(self, request: Request, trigger_id: str) -> Response:
        trigger = selectors.trigger_get(team=self.principal.team, trigger_id=trigger_id)
        runs = selectors.trigger_runs(trigger=trigger)[:10]
        return ok(cronJob=selectors.trigger_body(trigger), recentRuns=[selectors.run_body(r) for r in runs])

    @extend_schema(request=shapes.TriggerInputSerializer, responses={200: shapes.TriggerResponseSerializer})
    def put(self, request: Request, trigger_id: str) -> Response:
        trigger = selectors.trigger_get(team=self.principal.team, trigger_id=trigger_id)
        trigger = services.trigger_update(trigger=trigger, data=object_body(request.data))
        return ok(cronJob=selectors.trigger_body(trigger))

    @extend_schema(responses={200: SuccessMessageSerializer})
    def delete(self, request: Request, trigger_id: str) -> Response:
        trigger = selectors.trigger_get(team=self.principal.team, trigger_id=trigger_id)
        services.trigger_delete(trigger=trigger)
        return ok(message="Cron job deleted")


class TriggerPauseApi(ApiView):
    @extend_schema(request=None, responses={200: shapes.TriggerPausedSerializer})
    def post(self, request: Request, trigger_id: str) -> Response:
        trigger = services.trigger_pause(trigger=selectors.trigger_get(team=self.principal.team, trigger_id=trigger_id))
        return ok(cronJob={"_id": trigger.pk, "status": trigger.status})


class TriggerResumeApi(ApiView):
    @extend_schema(request=None, responses={200: shapes.TriggerResumedSerializer})
    def post(self, request: Request, trigger_id: str) -> Response:
        trigger = services.trigger_resume(
            trigger=selectors.trigger_get(team=self.principal.team, trigger_id=trigger_id)
        )
        return ok(
            cronJob={
                "_id": trigger.pk,
                "status": trigger.status,
                "consecutiveFailures": 0,
                "nextRunAt": timestamp(trigger.next_run_at),
            }
        )


class TriggerRunNowApi(ApiView):
    @extend_schema(request=None, responses={200: SuccessMessageSerializer})
    def post(self, request: Request, trigger_id: str) -> Response:
        trigger = selectors.trigger_get(team=self.principal.team, trigger_id=trigger_id)
        run_trigger.delay(trigger.pk)
        return ok(message="Job triggered. Check runs endpoint for results.")


class TriggerRunsApi(ApiView):
    @extend_schema(parameters=[shapes.RunsQuerySerializer], responses={200: shapes.RunListSerializer})
    def get(self, request: Request, trigger_id: str) -> Response:
        trigger = selectors.trigger_get(team=self.principal.team, trigger_id=trigger_id)
        rows, pagination = paginate(request, selectors.trigger_runs(trigger=trigger), max_limit=RUNS_MAX_LIMIT)
        return ok(runs=[selectors.run_body(r) for r in rows], pagination=pagination)


class TriggerRunDetailApi(ApiView):
    @extend_schema(responses={200: shapes.RunResponseSerializer})
    def get(self, request: Request, trigger_id: str, run_id: str) -> Response:
        trigger = selectors.trigger_get(team=self.principal.team, trigger_id=trigger_id)
        return ok(run=selectors.run_body(selectors.trigger_run_get(trigger=trigger, run_id=run_id)))
