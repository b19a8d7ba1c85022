"""Reads of triggers and their runs, always scoped to a team."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from accounts.models import Team
from enigma_site.api import timestamp

from .errors import TriggerNotFound, TriggerRunNotFound
from .models import Trigger, TriggerRun


def _team_id(team: Team | int) -> int:
    return team if isinstance(team, int) else team.pk


def trigger_get(*, team: Team | int, trigger_id: str) -> Trigger:
    trigger = Trigger.objects.filter(pk=str(trigger_id)[:64], team_id=_team_id(team)).first()
    if trigger is None:
        raise TriggerNotFound()
    return trigger


def trigger_list(*, team: Team | int) -> QuerySet[Trigger]:
    return Trigger.objects.filter(team_id=_team_id(team)).order_by("-created_at")


def trigger_runs(*, trigger: Trigger) -> QuerySet[TriggerRun]:
    return TriggerRun.objects.filter(trigger=trigger).order_by("-created_at")


def trigger_run_get(*, trigger: Trigger, run_id: str) -> TriggerRun:
    run = TriggerRun.objects.filter(trigger=trigger, pk=str(run_id)[:64]).first()
    if run is None:
        raise TriggerRunNotFound()
    return run


def trigger_body(trigger: Trigger) -> dict[str, Any]:
    webhook = trigger.webhook and {k: ("***" if k == "auth" and v else v) for k, v in trigger.webhook.items()}
    return {
        "_id": trigger.pk,
        "userId": str(trigger.team_id),
        "environmentId": trigger.environment_id,
        "policyId": trigger.policy_id or None,
        "name": trigger.name,
        "description": trigger.description,
        "scheduleType": trigger.schedule_type,
        "scheduleAt": timestamp(trigger.schedule_at),
        "scheduleInterval": trigger.schedule_interval or None,
        "scheduleCron": trigger.schedule_cron or None,
        "timezone": trigger.timezone,
        "prompt": trigger.prompt,
        "startingUrl": trigger.starting_url or None,
        "outputType": trigger.output_type,
        "outputSchema": trigger.output_schema,
        "deliveryMode": trigger.delivery_mode,
        "webhook": webhook,
        "retryPolicy": trigger.retry_policy,
        "maxConsecutiveFailures": trigger.max_consecutive_failures,
        "status": trigger.status,
        "nextRunAt": timestamp(trigger.next_run_at),
        "consecutiveFailures": trigger.consecutive_failures,
        "createdAt": timestamp(trigger.created_at),
    }


def run_body(run: TriggerRun) -> dict[str, Any]:
    return {
        "_id": run.pk,
        "cronJobId": run.trigger_id,
        "status": run.status,
        "manual": run.manual,
        "sessionId": run.session_id or None,
        "taskId": run.task_id or None,
        "result": run.result or None,
        "error": run.error or None,
        "code": run.code or None,
        "createdAt": timestamp(run.created_at),
        "completedAt": timestamp(run.completed_at),
    }
