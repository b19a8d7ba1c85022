"""Writes of environments and files: one function per use case."""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
from datetime import timedelta
from typing import Any

import requests
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import F, Sum
from django.utils import timezone

from accounts.models import Team
from enigma_site.errors import ApiError, InvalidParameter, MissingField

from . import conf, policy_engine, schedule, storage, webhooks
from .archive import ArchiveError, read_profile_archive
from .errors import (
    DownloadRefused,
    EnvironmentInUse,
    EnvironmentLimitReached,
    EnvironmentNotFound,
    FileTooLarge,
    InvalidArchive,
    StorageQuotaExceeded,
)
from .models import (
    Environment,
    Policy,
    PolicyAuditEntry,
    StoredFile,
    Trigger,
    TriggerRun,
    WebhookDelivery,
    WebhookSecret,
)

logger = logging.getLogger(__name__)

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")


@transaction.atomic
def environment_create(*, team: Team, name: str, description: str = "", noun: str = "Environment") -> Environment:
    """Create an empty environment; at most Environment.MAX_PER_TEAM per team."""
    Team.objects.select_for_update().filter(pk=team.pk).first()  # serialises concurrent creates
    if Environment.objects.filter(team=team).count() >= Environment.MAX_PER_TEAM:
        raise EnvironmentLimitReached(
            f"Maximum of {Environment.MAX_PER_TEAM} {noun.lower()}s allowed",
            details={"limit": Environment.MAX_PER_TEAM},
        )
    return Environment.objects.create(team=team, name=name, description=description)


def environment_delete(*, environment: Environment) -> None:
    """Delete the environment, its profile and all its files."""
    files = list(StoredFile.objects.filter(environment=environment).values_list("path", flat=True))
    environment_id = environment.pk
    environment.delete()
    for path in files:
        storage.file_remove(path)
    storage.environment_remove(environment_id)


# A session that ended this recently still holds its environment until its state is saved.
_SAVE_GRACE_S = 30


def _holder_busy(session_id: str) -> bool:
    """Whether the session holding an environment still needs it: it is live, or it has just
    ended and session_end has not saved its state yet."""
    from sessions_app.models import BrowserSession

    if not session_id:
        return False
    row = BrowserSession.objects.filter(pk=session_id).values("state", "ended_at").first()
    if row is None:
        return False
    if row["state"] in BrowserSession.LIVE_STATES:
        return True
    ended_at = row["ended_at"]
    return ended_at is not None and ended_at > timezone.now() - timedelta(seconds=_SAVE_GRACE_S)


def _in_use(environment_id: str, holder: str) -> EnvironmentInUse:
    return EnvironmentInUse(
        f"Environment {environment_id} is in use by session {holder}; end that session first",
        details={"environmentId": environment_id, "sessionId": holder},
    )


def environment_claim(*, environment_id: str, session_id: str) -> None:
    """Make `session_id` the one session using the environment, or raise EnvironmentInUse (409).

    One live session per environment, so no session's saved state overwrites another's: the
    claim is a conditional UPDATE on the holder seen, so two concurrent claims cannot both win.
    """
    for _ in range(3):
        holder = Environment.objects.filter(pk=environment_id).values_list("session_id", flat=True).first()
        if holder is None:
            raise EnvironmentNotFound()
        if holder == session_id:
            return
        if _holder_busy(holder):
            raise _in_use(environment_id, holder)
        if Environment.objects.filter(pk=environment_id, session_id=holder).update(session_id=session_id) == 1:
            return
    raise _in_use(environment_id, "another session")


def environment_profile_upload(*, environment: Environment, upload: UploadedFile | None) -> Environment:
    """Replace the profile with the archive's storage state; the environment becomes ready.

    Refused with 409 ENVIRONMENT_IN_USE while a session uses the environment (its end would
    overwrite the upload)."""
    if upload is None:
        raise InvalidArchive("No file provided", details={"parameter": "file"})
    name = (upload.name or "").lower()
    if not name.endswith(ARCHIVE_SUFFIXES):
        raise InvalidArchive("Only .tar.gz files are allowed", details={"parameter": "file"})
    limit = conf.max_profile_bytes()
    if upload.size is not None and upload.size > limit:
        raise FileTooLarge(
            f"Profile archives are limited to {limit // (1024 * 1024)} MB",
            details={"parameter": "file", "max": limit, "size": upload.size},
        )
    try:
        state = read_profile_archive(upload.file, max_inflated=conf.max_profile_inflated_bytes())
    except ArchiveError as exc:
        raise InvalidArchive(str(exc), details={"parameter": "file"}) from exc
    holder = Environment.objects.filter(pk=environment.pk).values_list("session_id", flat=True).first() or ""
    if _holder_busy(holder):
        raise _in_use(environment.pk, holder)
    # Release a stale holder first: a session claiming from now on loads this upload.
    Environment.objects.filter(pk=environment.pk, session_id=holder).update(session_id="")
    storage.state_write(environment.pk, state)
    now = timezone.now()
    Environment.objects.filter(pk=environment.pk).update(
        status=Environment.Status.READY, blob_size=upload.size or 0, blob_uploaded_at=now, updated_at=now
    )
    environment.refresh_from_db()
    return environment


def environment_mark_used(*, environment_id: str) -> None:
    Environment.objects.filter(pk=environment_id).update(usage_count=F("usage_count") + 1, last_used_at=timezone.now())


def environment_state_save(*, environment_id: str, state: dict[str, Any] | None, session_id: str = "") -> bool:
    """Save a session's final browser state into its environment and release the environment.

    Only the session holding the environment saves (or any session when none holds it, as for
    sessions started before holders existed); a deleted environment is skipped. Returns whether
    the state was written.
    """
    holder = Environment.objects.filter(pk=environment_id).values_list("session_id", flat=True).first()
    if holder is None:
        return False
    if holder not in ("", session_id):
        logger.warning("session %s did not save environment %s: it is held by %s", session_id, environment_id, holder)
        return False
    saved = False
    if state is not None:
        size = storage.state_write(environment_id, state)
        Environment.objects.filter(pk=environment_id).update(
            status=Environment.Status.READY, blob_size=size, updated_at=timezone.now()
        )
        saved = True
    if holder:
        Environment.objects.filter(pk=environment_id, session_id=holder).update(session_id="")
    return saved


def _file_reserve(stored: StoredFile, *, parameter: str) -> None:
    """Save the row of a file about to be written if the team's storage quota has room for it
    (uploads and downloads count alike), else raise StorageQuotaExceeded (413). The team row
    lock makes concurrent writers of one team check one after the other."""
    limit = conf.team_storage_bytes()
    with transaction.atomic():
        Team.objects.select_for_update().filter(pk=stored.team_id).first()
        used = StoredFile.objects.filter(team_id=stored.team_id).aggregate(total=Sum("size"))["total"] or 0
        if used + stored.size > limit:
            raise StorageQuotaExceeded(
                f"Storage quota exceeded: {used} of {limit} bytes used, this file needs {stored.size}; "
                "delete files (DELETE /files/<id>) to make room",
                details={"parameter": parameter, "used": used, "limit": limit, "size": stored.size},
            )
        stored.save()


def file_upload(*, team: Team, environment: Environment | None, upload: UploadedFile) -> StoredFile:
    """Store an uploaded file; without an environment it is an orphan (deleted after an hour)."""
    limit = conf.max_upload_bytes()
    if upload.size is not None and upload.size > limit:
        raise FileTooLarge(
            f"File {upload.name} exceeds the maximum size of {limit // (1024 * 1024)} MB",
            details={"parameter": "files", "max": limit, "size": upload.size},
        )
    stored = StoredFile(
        team=team,
        environment=environment,
        kind=StoredFile.Kind.UPLOAD,
        original_name=storage.safe_filename(upload.name or "file"),
        size=upload.size or 0,
    )
    stored.path = storage.file_relative(stored.pk, stored.original_name)
    _file_reserve(stored, parameter="files")
    try:
        storage.file_write(stored.path, upload.chunks())
    except OSError:
        stored.delete()
        raise
    return stored


def file_delete(*, stored: StoredFile) -> None:
    path = stored.path
    stored.delete()
    storage.file_remove(path)


def files_promote(*, team_id: int, file_ids: list[str], environment_id: str) -> int:
    """Orphan uploads used in a session with an environment join it and are kept (api.md §5.2)."""
    return StoredFile.objects.filter(
        team_id=team_id, pk__in=file_ids, environment__isnull=True, kind=StoredFile.Kind.UPLOAD
    ).update(environment_id=environment_id)


def file_store_download(
    *,
    team_id: int,
    session_id: str,
    task_id: str,
    environment_id: str | None,
    source_url: str,
    filename: str,
    temp_path: str,
) -> StoredFile:
    """Keep a file the browser downloaded during a task (moved in from a temporary path).

    Refused, and the temporary file deleted, when it is larger than ENIGMA_MAX_DOWNLOAD_MB, when
    the session already kept ENIGMA_MAX_DOWNLOADS_PER_SESSION files (DownloadRefused), or when
    the team's storage quota has no room (StorageQuotaExceeded).
    """
    try:
        size = os.path.getsize(temp_path)
        limit = conf.max_download_bytes()
        if size > limit:
            raise DownloadRefused(
                f"Download {filename!r} is larger than {limit // (1024 * 1024)} MB",
                details={"max": limit, "size": size},
            )
        count = conf.max_downloads_per_session()
        if StoredFile.objects.filter(session_id=session_id, kind=StoredFile.Kind.DOWNLOAD).count() >= count:
            raise DownloadRefused(f"This session already kept {count} downloads", details={"max": count})
        stored = StoredFile(
            team_id=team_id,
            environment_id=environment_id,
            kind=StoredFile.Kind.DOWNLOAD,
            original_name=storage.safe_filename(filename),
            session_id=session_id,
            task_id=task_id,
            source_url=source_url[:4000],
            size=size,
        )
        stored.path = storage.file_relative(stored.pk, stored.original_name)
        _file_reserve(stored, parameter="download")
    except ApiError:
        os.remove(temp_path)
        raise
    try:
        storage.file_move_in(stored.path, temp_path)
    except OSError:
        stored.delete()
        raise
    return stored


def files_delete_expired_downloads(*, now: Any = None) -> int:
    """Delete downloads older than ENIGMA_DOWNLOAD_RETENTION_S (seven days by default)."""
    cutoff = (now or timezone.now()) - timedelta(seconds=conf.download_retention_s())
    count = 0
    for stored in StoredFile.objects.filter(kind=StoredFile.Kind.DOWNLOAD, created_at__lt=cutoff):
        file_delete(stored=stored)
        count += 1
    if count:
        logger.info("deleted %s expired downloads", count)
    return count


def files_delete_orphans(*, now: Any = None) -> int:
    """Delete uploads that never joined an environment within the TTL (one hour by default)."""
    cutoff = (now or timezone.now()) - timedelta(seconds=conf.orphan_file_ttl_s())
    count = 0
    for stored in StoredFile.objects.filter(
        kind=StoredFile.Kind.UPLOAD, environment__isnull=True, created_at__lt=cutoff
    ):
        file_delete(stored=stored)
        count += 1
    if count:
        logger.info("deleted %s orphan files", count)
    return count


# ----- webhooks ---------------------------------------------------------------------------------


def webhook_secret_get(*, team_id: int) -> str:
    """The team's signing secret, created on first use."""
    row, _ = WebhookSecret.objects.get_or_create(team_id=team_id, defaults={"secret": "whsec_" + secrets.token_hex(24)})
    return row.secret


def webhook_secret_rotate(*, team_id: int) -> str:
    secret = "whsec_" + secrets.token_hex(24)
    WebhookSecret.objects.update_or_create(team_id=team_id, defaults={"secret": secret})
    return secret


def webhook_schedule(*, team_id: int, session_id: str, task_id: str, webhook: dict[str, Any]) -> WebhookDelivery:
    """Record a task's webhook at submit time; it is sent when the task finishes."""
    return WebhookDelivery.objects.create(
        team_id=team_id,
        session_id=session_id,
        task_id=task_id,
        name=webhook.get("name") or "",
        url=webhook["url"],
        auth=webhook.get("auth") or "",
        submitted_data=webhook.get("submittedData") or "full_response",
    )


def webhook_payload(*, submitted_data: str, task: Any) -> Any:
    """The body for one of the three documented kinds (api.md §5.7)."""
    from sessions_app.selectors import task_data, task_usage

    completed_at = task.completed_at.isoformat().replace("+00:00", "Z") if task.completed_at else None
    if submitted_data == "just_ping":
        return {"event": "task_completed", "sessionId": task.session_id, "taskId": task.pk, "completedAt": completed_at}
    if submitted_data == "ai_response":
        if task.config.get("outputType") == "structured_json":
            try:
                return json.loads(task.result_message)
            except ValueError:
                pass
        return {"message": task.result_message}
    usage = task_usage(task)
    data = {
        **task_data(task),
        "prompt_tokens": usage["prompt_tokens"],
        "completion_tokens": usage["completion_tokens"],
        "total_tokens": usage["total_tokens"],
        "completion_time": usage["completion_time"],
    }
    return {
        "type": "task_completed",
        "sessionId": task.session_id,
        "taskId": task.pk,
        "data": data,
        "usage": {k: usage[k] for k in ("inputTokens", "outputTokens", "computeTime", "cost")},
        "completedAt": completed_at,
    }


def webhooks_task_finished(*, task_id: str) -> list[str]:
    """Fix the payloads of a finished task's webhooks; return the ids to send.

    Only completed tasks are delivered (the documented event); the others are marked skipped.
    A second call finds nothing scheduled and returns [] (safe to run twice).
    """
    from sessions_app.models import Task

    task = Task.objects.filter(pk=task_id).first()
    if task is None:
        return []
    ids = []
    for delivery in WebhookDelivery.objects.filter(task_id=task_id, status=WebhookDelivery.Status.SCHEDULED):
        if task.state != Task.State.COMPLETED:
            WebhookDelivery.objects.filter(pk=delivery.pk).update(status=WebhookDelivery.Status.SKIPPED)
            continue
        payload = webhook_payload(submitted_data=delivery.submitted_data, task=task)
        if (
            WebhookDelivery.objects.filter(pk=delivery.pk, status=WebhookDelivery.Status.SCHEDULED).update(
                status=WebhookDelivery.Status.PENDING, payload=payload
            )
            == 1
        ):
            ids.append(delivery.pk)
    return ids


class WebhookAttemptFailed(Exception):
    """One delivery attempt failed; the Celery task retries with backoff."""


def webhook_attempt(*, delivery_id: str, final: bool) -> None:
    """Send one attempt; log it on the row. Raise WebhookAttemptFailed unless delivered."""
    delivery = WebhookDelivery.objects.filter(pk=delivery_id).first()
    if delivery is None or delivery.status != WebhookDelivery.Status.PENDING:
        return
    body = json.dumps(delivery.payload, separators=(",", ":")).encode()
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Enigma-Webhooks/1",
        webhooks.SIGNATURE_HEADER: webhooks.signature(webhook_secret_get(team_id=delivery.team_id), timestamp, body),
        webhooks.DELIVERY_HEADER: delivery.pk,
        webhooks.EVENT_HEADER: "task_completed",
    }
    if delivery.auth:
        headers["Authorization"] = delivery.auth
    started = time.monotonic()
    status_code, error = None, ""
    reason = webhooks.url_block_reason(delivery.url, allowed_hosts=conf.allowed_private_hosts())
    if reason is not None:
        error = f"blocked: {reason}"
    else:
        try:
            response = requests.post(
                delivery.url, data=body, headers=headers, timeout=conf.webhook_timeout_s(), allow_redirects=False
            )
            status_code = response.status_code
        except requests.RequestException as exc:
            error = type(exc).__name__
    ok = status_code is not None and 200 <= status_code < 300
    entry = {
        "at": timezone.now().isoformat(),
        "statusCode": status_code,
        "error": error,
        "ms": int((time.monotonic() - started) * 1000),
    }
    status = (
        WebhookDelivery.Status.DELIVERED
        if ok
        else (WebhookDelivery.Status.FAILED if final else WebhookDelivery.Status.PENDING)
    )
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        attempts=F("attempts") + 1,
        attempt_log=[*delivery.attempt_log, entry],
        status=status,
        delivered_at=timezone.now() if ok else None,
    )
    if not ok:
        raise WebhookAttemptFailed(error or f"HTTP {status_code}")


# ----- policies ---------------------------------------------------------------------------------


def _policy_fields(data: dict[str, Any]) -> dict[str, Any]:
    try:
        rules = policy_engine.validate_rules(data)
    except policy_engine.PolicyInvalid as exc:
        raise InvalidParameter(exc.parameter, str(exc)) from exc
    fields: dict[str, Any] = {"rules": rules}
    for key, attr, limit in (("name", "name", 100), ("description", "description", 500), ("llmRole", "llm_role", 2000)):
        value = data.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or len(value) > limit:
            raise InvalidParameter(key, f"Invalid parameter '{key}': a string of at most {limit} characters")
        fields[attr] = value.strip() if key == "name" else value
    if "status" in data:
        if data["status"] not in Policy.Status.values:
            raise InvalidParameter("status", "Invalid parameter 'status': must be active or draft")
        fields["status"] = data["status"]
    return fields


def policy_create(*, team: Team, data: dict[str, Any]) -> Policy:
    fields = _policy_fields(data)
    if not fields.get("name"):
        raise MissingField("name", "Policy name is required")
    return Policy.objects.create(team=team, **fields)


def policy_update(*, policy: Policy, data: dict[str, Any]) -> Policy:
    """Replace the rules with the body's (absent rule groups become empty); other fields if given."""
    fields = _policy_fields(data)
    if "name" in data and not fields.get("name"):
        raise MissingField("name", "Policy name is required")
    for attr, value in fields.items():
        setattr(policy, attr, value)
    policy.save()
    return policy


def policy_delete(*, policy: Policy) -> None:
    policy.delete()


def policy_audit_record(
    *,
    team_id: int,
    session_id: str,
    task_id: str,
    policy_id: str,
    source: str,
    action: str,
    category: str,
    target: str,
    url: str,
    rule: str,
    decision: str,
    response: str = "",
) -> PolicyAuditEntry:
    return PolicyAuditEntry.objects.create(
        team_id=team_id,
        session_id=session_id,
        task_id=task_id,
        policy_id=policy_id,
        source=source,
        action=action,
        category=category,
        target=target[:2000],
        url=url[:4000],
        rule=rule,
        decision=decision,
        response=response[:2000],
    )


# ----- triggers ---------------------------------------------------------------------------------

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
    from sessions_app.schema import _parse_webhook, normalize_url

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
        trigger.webhook = _parse_webhook(data["webhook"], "webhook")
    if trigger.delivery_mode in ("webhook", "both") and not trigger.webhook:
        raise InvalidParameter("webhook", "webhook config is required when deliveryMode includes webhook")
    if trigger.webhook:
        reason = webhooks.url_block_reason(
            trigger.webhook["url"], allowed_hosts=conf.allowed_private_hosts(), resolve=False
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
        minimum=conf.trigger_min_interval_s(),
    )


@transaction.atomic
def trigger_create(*, team: Team, data: dict[str, Any]) -> Trigger:
    Team.objects.select_for_update().filter(pk=team.pk).first()
    limit = conf.max_triggers_per_team()
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
    from sessions_app.schema import parse_session_body
    from sessions_app.services import session_start

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
    from sessions_app.models import Task

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
    from sessions_app.models import Task

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
