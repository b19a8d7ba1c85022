"""Writes of triggers (/cron-jobs) and their runs: one function per use case."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import Team
from enigma_site.errors import ApiError, InvalidParameter
from enigma_site.serializers import validated
from sessions_app.models import Task
from sessions_app.schema import parse_session_body
from sessions_app.services import session_start

from . import schedule
from .models import Trigger, TriggerRun
from .serializers import SCHEDULE_KEYS, TriggerInputSerializer

logger = logging.getLogger(__name__)

# TriggerInputSerializer's fields and the attributes they set (the schedule's: _trigger_schedule).
_ATTRIBUTES = {
    "name": "name",
    "prompt": "prompt",
    "environmentId": "environment",
    "policyId": "policy_id",
    "description": "description",
    "startingUrl": "starting_url",
    "outputType": "output_type",
    "outputSchema": "output_schema",
    "deliveryMode": "delivery_mode",
    "webhook": "webhook",
    "retryPolicy": "retry_policy",
    "maxConsecutiveFailures": "max_consecutive_failures",
}


def _trigger_apply(trigger: Trigger, body: dict[str, Any], *, creating: bool) -> None:
    """Validate `body` (TriggerInputSerializer) onto `trigger`: all fields on create, the given
    ones on update; the schedule last, with its next run."""
    data = validated(TriggerInputSerializer(instance=trigger, data=body, creating=creating))
    for key, attr in _ATTRIBUTES.items():
        if key in data:
            setattr(trigger, attr, data[key])
    if creating or SCHEDULE_KEYS & set(data):
        _trigger_schedule(trigger, data)


def _trigger_schedule(trigger: Trigger, data: dict[str, Any]) -> None:
    try:
        kind = data.get("scheduleType", trigger.schedule_type)
        if kind not in Trigger.ScheduleType.values:
            raise schedule.ScheduleInvalid(
                "scheduleType", "Invalid parameter 'scheduleType': must be at, every or cron"
            )
        trigger.schedule_type = kind
        trigger.timezone = str(data.get("timezone", trigger.timezone) or "UTC")
        schedule.zone(trigger.timezone)
        if "scheduleAt" in data:
            trigger.schedule_at = schedule.at_time(data["scheduleAt"], trigger.timezone)
        if "scheduleInterval" in data:
            trigger.schedule_interval = str(data["scheduleInterval"] or "")
        if "scheduleCron" in data:
            trigger.schedule_cron = schedule.check_cron(data["scheduleCron"])
        if kind == "at" and trigger.schedule_at is None:
            raise schedule.ScheduleInvalid("scheduleAt", "Invalid parameter 'scheduleAt': required for \"at\"")
        if kind == "cron" and not trigger.schedule_cron:
            raise schedule.ScheduleInvalid("scheduleCron", "Invalid parameter 'scheduleCron': required for \"cron\"")
        trigger.next_run_at = _next(trigger, after=timezone.now())
    except schedule.ScheduleInvalid as exc:
        raise InvalidParameter(exc.parameter, str(exc)) from exc


def _next(trigger: Trigger, *, after: Any, previous: Any = None) -> Any:
    return schedule.next_run(
        schedule_type=trigger.schedule_type,
        at=trigger.schedule_at,
        interval=trigger.schedule_interval,
        cron=trigger.schedule_cron,
        tz=trigger.timezone,
        after=after,
        previous=previous,
        minimum=settings.ENIGMA_TRIGGER_MIN_INTERVAL_S,
    )


@transaction.atomic
def trigger_create(*, team: Team, data: dict[str, Any]) -> Trigger:
    Team.objects.select_for_update().filter(pk=team.pk).first()
    limit = settings.ENIGMA_MAX_TRIGGERS
    if Trigger.objects.filter(team=team).count() >= limit:
        raise ApiError(f"Maximum of {limit} cron jobs per user", code="TRIGGER_LIMIT_REACHED")
    trigger = Trigger(team=team)
    _trigger_apply(trigger, data, creating=True)
    trigger.save()
    return trigger


def trigger_update(*, trigger: Trigger, data: dict[str, Any]) -> Trigger:
    _trigger_apply(trigger, data, creating=False)
    trigger.save()
    return trigger


def trigger_delete(*, trigger: Trigger) -> None:
    trigger.delete()


def trigger_pause(*, trigger: Trigger) -> Trigger:
    if Trigger.objects.filter(pk=trigger.pk, status=Trigger.Status.ACTIVE).update(status=Trigger.Status.PAUSED) != 1:
        raise ApiError(f'Cannot pause a job with status "{trigger.status}"', code="INVALID_STATE")
    trigger.refresh_from_db()
    return trigger


def trigger_resume(*, trigger: Trigger) -> Trigger:
    """Resume and reset the failure count; the next run is computed from now."""
    next_run_at = _next(trigger, after=timezone.now())
    if (
        Trigger.objects.filter(pk=trigger.pk, status=Trigger.Status.PAUSED).update(
            status=Trigger.Status.ACTIVE, consecutive_failures=0, next_run_at=next_run_at
        )
        != 1
    ):
        raise ApiError(f'Cannot resume a job with status "{trigger.status}"', code="INVALID_STATE")
    trigger.refresh_from_db()
    return trigger


def trigger_run_start(*, trigger_id: str, manual: bool) -> TriggerRun | None:
    """Start one run: a run-task session under the trigger's environment (and policy)."""
    trigger = Trigger.objects.filter(pk=trigger_id).select_related("team").first()
    if trigger is None:
        return None
    run = TriggerRun.objects.create(trigger=trigger, manual=manual)
    task: dict[str, Any] = {"prompt": trigger.prompt}
    if trigger.starting_url:
        task["startingUrl"] = trigger.starting_url
    if trigger.output_type != "text":
        task.update(outputType=trigger.output_type, outputSchema=trigger.output_schema)
    if trigger.webhook:
        task["webhook"] = {k: v for k, v in trigger.webhook.items() if v is not None}
    body: dict[str, Any] = {"environmentId": trigger.environment_id, "task": task}
    if trigger.policy_id:
        body["policyId"] = trigger.policy_id
    try:
        session, started = session_start(
            team=trigger.team, api_key=None, spec=parse_session_body(body, require_task=True)
        )
    except ApiError as exc:
        _trigger_run_settle(run, status=TriggerRun.Status.FAILED, code=exc.code, error=exc.message)
        run.refresh_from_db()
        return run
    assert started is not None
    TriggerRun.objects.filter(pk=run.pk).update(session_id=session.pk, task_id=started.pk)
    run.refresh_from_db()
    return run


def _trigger_run_settle(run: TriggerRun, *, status: str, code: str = "", error: str = "", result: str = "") -> None:
    """Finish a run once and move the trigger's failure count (pausing it at its limit), in
    one transaction so nobody sees a settled run with a stale trigger."""
    with transaction.atomic():
        settled = TriggerRun.objects.filter(pk=run.pk, status=TriggerRun.Status.RUNNING).update(
            status=status, code=code, error=error[:2000], result=result[:20000], completed_at=timezone.now()
        )
        if settled != 1:
            return
        if status == TriggerRun.Status.COMPLETED:
            Trigger.objects.filter(pk=run.trigger_id).update(consecutive_failures=0)
            return
        trigger = Trigger.objects.select_for_update().get(pk=run.trigger_id)
        trigger.consecutive_failures += 1
        if trigger.consecutive_failures >= trigger.max_consecutive_failures:
            trigger.status = Trigger.Status.PAUSED
            logger.info("trigger %s paused after %s consecutive failures", trigger.pk, trigger.consecutive_failures)
        trigger.save(update_fields=["consecutive_failures", "status", "updated_at"])


def trigger_runs_task_finished(*, task_id: str) -> None:
    """Settle the run whose task has reached an end (any end: completed, failed, terminated)."""
    run = TriggerRun.objects.filter(task_id=task_id, status=TriggerRun.Status.RUNNING).first()
    if run is None:
        return
    task = Task.objects.filter(pk=task_id).first()
    if task is None or task.state in Task.OPEN_STATES:
        return
    if task.state == Task.State.COMPLETED:
        _trigger_run_settle(run, status=TriggerRun.Status.COMPLETED, result=task.result_message)
    else:
        _trigger_run_settle(
            run, status=TriggerRun.Status.FAILED, code=task.code or task.state, error=task.error or task.state
        )


def triggers_run_due(*, now: Any = None) -> list[str]:
    """Start every active trigger whose time has come (claimed by a conditional update, so two
    beats never start one twice), and settle runs whose task ended without a finish event."""
    now = now or timezone.now()
    started = []
    for trigger in Trigger.objects.filter(status=Trigger.Status.ACTIVE, next_run_at__lte=now):
        try:
            following = _next(trigger, after=now, previous=trigger.next_run_at)
        except schedule.ScheduleInvalid:  # saved before its schedule was checked this way
            logger.warning("trigger %s has a schedule with no next run; paused", trigger.pk)
            Trigger.objects.filter(pk=trigger.pk).update(status=Trigger.Status.PAUSED)
            continue
        if (
            Trigger.objects.filter(pk=trigger.pk, status=Trigger.Status.ACTIVE, next_run_at=trigger.next_run_at).update(
                next_run_at=following
            )
            != 1
        ):
            continue
        run = trigger_run_start(trigger_id=trigger.pk, manual=False)
        if run is not None:
            started.append(run.pk)
    ended = TriggerRun.objects.filter(status=TriggerRun.Status.RUNNING, task_id__gt="").exclude(
        task_id__in=Task.objects.filter(state__in=Task.OPEN_STATES).values("pk")
    )
    for run in ended:
        trigger_runs_task_finished(task_id=run.task_id)
    return started
