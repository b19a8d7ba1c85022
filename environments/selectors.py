"""Reads of environments, files and webhook deliveries, always scoped to a team."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from accounts.models import Team

from . import storage
from .errors import EnvironmentNotFound, FileNotFound, PolicyNotFound, TriggerNotFound, TriggerRunNotFound
from .models import Environment, Policy, PolicyAuditEntry, StoredFile, Trigger, TriggerRun, WebhookDelivery


def _team_id(team: Team | int) -> int:
    return team if isinstance(team, int) else team.pk


def environment_get(*, team: Team | int, environment_id: str, noun: str = "Environment") -> Environment:
    """Return the team's environment, or raise EnvironmentNotFound (also for another team's)."""
    environment = Environment.objects.filter(pk=str(environment_id)[:64], team_id=_team_id(team)).first()
    if environment is None:
        raise EnvironmentNotFound(f"{noun} not found")
    return environment


def environment_list(*, team: Team | int) -> QuerySet[Environment]:
    return Environment.objects.filter(team_id=_team_id(team)).order_by("-created_at")


def environment_exists(*, team: Team | int, environment_id: str) -> bool:
    return Environment.objects.filter(pk=str(environment_id)[:64], team_id=_team_id(team)).exists()


def environment_storage_state(*, environment_id: str) -> dict[str, Any] | None:
    """The saved browser state of an environment, or None when it is empty."""
    return storage.state_read(environment_id)


def file_get(*, team: Team | int, file_id: str) -> StoredFile:
    stored = StoredFile.objects.filter(pk=str(file_id)[:64], team_id=_team_id(team)).first()
    if stored is None:
        raise FileNotFound()
    return stored


def environment_files(*, environment: Environment) -> QuerySet[StoredFile]:
    return StoredFile.objects.filter(environment=environment).order_by("created_at")


def files_missing(*, team: Team | int, file_ids: list[str]) -> list[str]:
    """The ids among `file_ids` that are not uploads of this team."""
    found = set(
        StoredFile.objects.filter(team_id=_team_id(team), pk__in=file_ids, kind=StoredFile.Kind.UPLOAD).values_list(
            "pk", flat=True
        )
    )
    return [f for f in file_ids if f not in found]


def file_paths(*, team: Team | int, file_ids: list[str]) -> list[str]:
    """Local paths of the team's files, in the order given; missing ones are left out."""
    rows = {f.pk: f for f in StoredFile.objects.filter(team_id=_team_id(team), pk__in=file_ids)}
    paths = []
    for file_id in file_ids:
        row = rows.get(file_id)
        if row is None:
            continue
        path = storage.absolute(row.path)  # in S3 mode, a local copy the browser can attach
        if path.exists():
            paths.append(str(path))
    return paths


def task_webhook_deliveries(*, team: Team | int, task_id: str) -> QuerySet[WebhookDelivery]:
    return WebhookDelivery.objects.filter(team_id=_team_id(team), task_id=task_id).order_by("created_at")


def iso(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def environment_body(environment: Environment) -> dict[str, Any]:
    return {
        "_id": environment.pk,
        "userId": str(environment.team_id),
        "name": environment.name,
        "description": environment.description,
        "status": environment.status,
        "blobSize": environment.blob_size,
        "blobUploadedAt": iso(environment.blob_uploaded_at),
        "lastUsedAt": iso(environment.last_used_at),
        "usageCount": environment.usage_count,
        "createdAt": iso(environment.created_at),
        "updatedAt": iso(environment.updated_at),
    }


def upload_body(environment: Environment) -> dict[str, Any]:
    return {
        "_id": environment.pk,
        "name": environment.name,
        "status": environment.status,
        "blobSize": environment.blob_size,
        "blobUploadedAt": iso(environment.blob_uploaded_at),
    }


def file_body(stored: StoredFile) -> dict[str, Any]:
    return {
        "fileId": stored.pk,
        "originalName": stored.original_name,
        "size": stored.size,
        "createdAt": iso(stored.created_at),
    }


def delivery_body(delivery: WebhookDelivery) -> dict[str, Any]:
    return {
        "deliveryId": delivery.pk,
        "name": delivery.name,
        "url": delivery.url,
        "submittedData": delivery.submitted_data,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "log": delivery.attempt_log,
        "createdAt": iso(delivery.created_at),
        "deliveredAt": iso(delivery.delivered_at),
    }


def policy_get(*, team: Team | int, policy_id: str) -> Policy:
    policy = Policy.objects.filter(pk=str(policy_id)[:64], team_id=_team_id(team)).first()
    if policy is None:
        raise PolicyNotFound()
    return policy


def policy_list(*, team: Team | int) -> QuerySet[Policy]:
    return Policy.objects.filter(team_id=_team_id(team)).order_by("-created_at")


def policy_active_exists(*, team: Team | int, policy_id: str) -> bool:
    return Policy.objects.filter(pk=str(policy_id)[:64], team_id=_team_id(team), status=Policy.Status.ACTIVE).exists()


def policy_rules(*, policy_id: str) -> dict[str, Any] | None:
    """The rule document of an active policy (None for a deleted or draft one)."""
    return Policy.objects.filter(pk=policy_id, status=Policy.Status.ACTIVE).values_list("rules", flat=True).first()


def policy_role(*, policy_id: str) -> str:
    """The "LLM role" text of an active policy ("" when none)."""
    return Policy.objects.filter(pk=policy_id, status=Policy.Status.ACTIVE).values_list(
        "llm_role", flat=True).first() or ""


def session_policy_audit(*, team: Team | int, session_id: str) -> QuerySet[PolicyAuditEntry]:
    return PolicyAuditEntry.objects.filter(team_id=_team_id(team), session_id=session_id).order_by("id")


def policy_body(policy: Policy) -> dict[str, Any]:
    return {
        "_id": policy.pk,
        "name": policy.name,
        "description": policy.description,
        "llmRole": policy.llm_role,
        "status": policy.status,
        **policy.rules,
        "createdAt": iso(policy.created_at),
        "updatedAt": iso(policy.updated_at),
    }


def audit_body(entry: PolicyAuditEntry) -> dict[str, Any]:
    return {
        "id": entry.pk,
        "timestamp": iso(entry.created_at),
        "sessionId": entry.session_id,
        "taskId": entry.task_id or None,
        "policyId": entry.policy_id,
        "source": entry.source,
        "action": entry.action,
        "category": entry.category,
        "target": entry.target,
        "url": entry.url,
        "matchedRule": entry.rule or None,
        "decision": entry.decision,
        "response": entry.response or None,
    }


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
        "scheduleAt": iso(trigger.schedule_at),
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
        "nextRunAt": iso(trigger.next_run_at),
        "consecutiveFailures": trigger.consecutive_failures,
        "createdAt": iso(trigger.created_at),
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
        "createdAt": iso(run.created_at),
        "completedAt": iso(run.completed_at),
    }
