"""REST endpoints: triggers, the `/cron-jobs` of api.md §5.8, and their runs."""

from __future__ import annotations

from rest_framework.request import Request
from rest_framework.response import Response

from enigma_site.api import ApiView, object_body, ok, page_params, timestamp

from . import selectors, services
from .tasks import run_trigger


class TriggerListCreateApi(ApiView):
    def get(self, request: Request) -> Response:
        return ok(cronJobs=[selectors.trigger_body(t) for t in selectors.trigger_list(team=self.principal.team)])

    def post(self, request: Request) -> Response:
        trigger = services.trigger_create(team=self.principal.team, data=object_body(request.data))
        return ok(cronJob=selectors.trigger_body(trigger), status=201)


class TriggerDetailApi(ApiView):
    def get(self, request: Request, trigger_id: str) -> Response:
        trigger = selectors.trigger_get(team=self.principal.team, trigger_id=trigger_id)
        runs = selectors.trigger_runs(trigger=trigger)[:10]
        return ok(cronJob=selectors.trigger_body(trigger), recentRuns=[selectors.run_body(r) for r in runs])

    def put(self, request: Request, trigger_id: str) -> Response:
        trigger = selectors.trigger_get(team=self.principal.team, trigger_id=trigger_id)
        trigger = services.trigger_update(trigger=trigger, data=object_body(request.data))
        return ok(cronJob=selectors.trigger_body(trigger))

    def delete(self, request: Request, trigger_id: str) -> Response:
        trigger = selectors.trigger_get(team=self.principal.team, trigger_id=trigger_id)
        services.trigger_delete(trigger=trigger)
        return ok(message="Cron job deleted")


class TriggerPauseApi(ApiView):
    def post(self, request: Request, trigger_id: str) -> Response:
        trigger = services.trigger_pause(trigger=selectors.trigger_get(team=self.principal.team, trigger_id=trigger_id))
        return ok(cronJob={"_id": trigger.pk, "status": trigger.status})


class TriggerResumeApi(ApiView):
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
    def post(self, request: Request, trigger_id: str) -> Response:
        trigger = selectors.trigger_get(team=self.principal.team, trigger_id=trigger_id)
        run_trigger.delay(trigger.pk)
        return ok(message="Job triggered. Check runs endpoint for results.")


class TriggerRunsApi(ApiView):
    def get(self, request: Request, trigger_id: str) -> Response:
        trigger = selectors.trigger_get(team=self.principal.team, trigger_id=trigger_id)
        page, limit = page_params(request, max_limit=50)
        runs = selectors.trigger_runs(trigger=trigger)
        total = runs.count()
        rows = runs[(page - 1) * limit : page * limit]
        return ok(
            runs=[selectors.run_body(r) for r in rows],
            pagination={"page": page, "limit": limit, "total": total, "totalPages": -(-total // limit)},
        )


class TriggerRunDetailApi(ApiView):
    def get(self, request: Request, trigger_id: str, run_id: str) -> Response:
        trigger = selectors.trigger_get(team=self.principal.team, trigger_id=trigger_id)
        return ok(run=selectors.run_body(selectors.trigger_run_get(trigger=trigger, run_id=run_id)))
