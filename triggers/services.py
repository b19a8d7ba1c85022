"""Writes of triggers (/cron-jobs) and their runs: one function per use case."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import Team
from enigma_site.errors import ApiError, InvalidParameter, MissingField
from environments.errors import EnvironmentNotFound
from environments.models import Environment
from policies.models import Policy
from sessions_app.models import Task
from sessions_app.schema import normalize_url, parse_session_body, parse_webhook
from sessions_app.services import session_start
from sessions_app.webhook_address import url_block_reason

from . import schedule
from .models import Trigger, TriggerRun

logger = logging.getLogger(__name__)

TRIGGER_FIELDS = {
    "name",
    "description",
    "environmentId",
    "policyId",
    "scheduleType",
    "scheduleAt",
    "scheduleInterval",
    "scheduleCron",
    "timezone",
    "prompt",
    "taskDetails",
    "startingUrl",
    "outputType",
    "outputSchema",
    "deliveryMode",
    "webhook",
    "retryPolicy",
    "maxConsecutiveFailures",
}


def _trigger_apply(trigger: Trigger, data: dict[str, Any], *, creating: bool) -> None:
    """Validate `data` onto `trigger` (all fields on create, the given ones on update)."""
    for key in data:
        if key not in TRIGGER_FIELDS:
            raise InvalidParameter(key, f"Unknown field '{key}'")
    if "taskDetails" in data and "prompt" not in data:
        data = {**data, "prompt": data["taskDetails"]}
    for key, message in (("name", "name is required"), ("prompt", "prompt is required")):
        if creating or key in data:
            value = data.get(key)
            if not isinstance(value, str) or not value.strip():
                raise MissingField(key, message)
            setattr(trigger, key, value.strip())
    if creating or "environmentId" in data:
        environment_id = data.get("environmentId")
        if not isinstance(environment_id, str) or not environment_id:
            raise InvalidParameter("environmentId", "Valid environmentId is required")
        environment = Environment.objects.filter(pk=environment_id[:64], team_id=trigger.team_id).first()
        if environment is None:
            raise EnvironmentNotFound()
        trigger.environment = environment
    if "policyId" in data:
        policy_id = data["policyId"] or ""
        if (
            policy_id
            and not Policy.objects.filter(
                pk=str(policy_id)[:64], team_id=trigger.team_id, status=Policy.Status.ACTIVE
            ).exists()
        ):
            raise InvalidParameter("policyId", f"Policy {policy_id} not found (or not active)")
        trigger.policy_id = policy_id
    if "description" in data:
        trigger.description = str(data["description"] or "")[:1000]
    if "startingUrl" in data:
        trigger.starting_url = normalize_url(data["startingUrl"], "startingUrl") if data["startingUrl"] else ""
    if "outputType" in data:
        if data["outputType"] not in ("text", "structured", "structured_json", "structured_csv"):
            raise InvalidParameter("outputType", "Invalid parameter 'outputType': must be text or structured")
        trigger.output_type = "structured_json" if data["outputType"] == "structured" else data["outputType"]
    if "outputSchema" in data:
        trigger.output_schema = data["outputSchema"]
    if "deliveryMode" in data:
        if data["deliveryMode"] not in ("webhook", "bot", "both"):
            raise InvalidParameter("deliveryMode", "Invalid parameter 'deliveryMode': must be webhook, bot or both")
        if data["deliveryMode"] != "webhook":
            raise InvalidParameter("deliveryMode", "Chat-bot delivery is not available on this installation")
        trigger.delivery_mode = data["deliveryMode"]
    if "webhook" in data:
        trigger.webhook = parse_webhook(data["webhook"], "webhook")
    if trigger.delivery_mode in ("webhook", "both") and not trigger.webhook:
        raise InvalidParameter("webhook", "webhook config is required when deliveryMode includes webhook")
    if trigger.webhook:
        reason = url_block_reason(
            trigger.webhook["url"], allowed_hosts=frozenset(settings.ENIGMA_ALLOWED_PRIVATE_HOSTS), resolve=False
        )
        if reason is not None:
            raise InvalidParameter(
                "webhook.url", f"Invalid parameter 'webhook.url': this address may not receive webhooks ({reason})"
            )
    if "retryPolicy" in data:
        trigger.retry_policy = data["retryPolicy"]
    if "maxConsecutiveFailures" in data:
        value = data["maxConsecutiveFailures"]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
            raise InvalidParameter(
                "maxConsecutiveFailures", "Invalid parameter 'maxConsecutiveFailures': an integer from 1 to 100"
            )
        trigger.max_consecutive_failures = value
    schedule_keys = {"scheduleType", "scheduleAt", "scheduleInterval", "scheduleCron", "timezone"}
    if creating or schedule_keys & set(data):
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
