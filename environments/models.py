"""Environments (persistent browser profiles), stored files and webhook deliveries."""

from __future__ import annotations

import secrets

from django.db import models


def object_id() -> str:
    """24 hex characters, the shape of the documented ids (api.md §0.5); 96 random bits."""
    return secrets.token_hex(12)


class Environment(models.Model):
    """A named browser profile (Playwright storage state on disk) plus persistent files."""

    class Status(models.TextChoices):
        EMPTY = "empty"
        UPLOADING = "uploading"
        READY = "ready"

    MAX_PER_TEAM = 20
    NAME_MAX = 100
    DESCRIPTION_MAX = 500

    id = models.CharField(primary_key=True, max_length=24, default=object_id, editable=False)
    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, related_name="environments")
    name = models.CharField(max_length=NAME_MAX)
    description = models.CharField(max_length=DESCRIPTION_MAX, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.EMPTY)
    blob_size = models.BigIntegerField(default=0)
    blob_uploaded_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    usage_count = models.PositiveIntegerField(default=0)
    # The session that holds the environment (one at a time); it is free again once that session
    # has ended and saved its state (see services.environment_claim).
    session_id = models.CharField(max_length=32, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.pk})"


class StoredFile(models.Model):
    """A file on disk under MEDIA_ROOT: uploaded for tasks, or downloaded by the browser."""

    class Kind(models.TextChoices):
        UPLOAD = "upload"
        DOWNLOAD = "download"

    id = models.CharField(primary_key=True, max_length=24, default=object_id, editable=False)
    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, related_name="stored_files")
    # Without an environment an upload is an orphan, deleted after an hour (api.md §5.2).
    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, null=True, blank=True, related_name="files")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.UPLOAD)
    original_name = models.CharField(max_length=255)
    size = models.BigIntegerField(default=0)
    path = models.CharField(max_length=500)  # relative to MEDIA_ROOT
    session_id = models.CharField(max_length=32, blank=True, db_index=True)
    task_id = models.CharField(max_length=32, blank=True, db_index=True)
    source_url = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"{self.original_name} ({self.pk})"


class WebhookSecret(models.Model):
    """The per-team key that signs webhook deliveries (Enigma-Signature header)."""

    team = models.OneToOneField("accounts.Team", on_delete=models.CASCADE, related_name="webhook_secret")
    secret = models.CharField(max_length=80)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"webhook secret of team {self.team_id}"


class WebhookDelivery(models.Model):
    """One webhook of one task: scheduled at submit, sent when the task finishes, retried."""

    class Status(models.TextChoices):
        SCHEDULED = "scheduled"  # the task has not finished yet
        PENDING = "pending"  # sending or waiting for a retry
        DELIVERED = "delivered"
        FAILED = "failed"  # gave up after the last attempt
        SKIPPED = "skipped"  # the task did not complete

    id = models.CharField(primary_key=True, max_length=24, default=object_id, editable=False)
    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, related_name="webhook_deliveries")
    session_id = models.CharField(max_length=32, db_index=True)
    task_id = models.CharField(max_length=32, db_index=True)
    name = models.CharField(max_length=200, blank=True)
    url = models.TextField()
    # The customer's Authorization header value: needed for every retry, never shown back.
    auth = models.TextField(blank=True)
    submitted_data = models.CharField(max_length=20, default="full_response")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.SCHEDULED)
    payload = models.JSONField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    attempt_log = models.JSONField(default=list, blank=True)  # [{at, statusCode, error, ms}]
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"webhook {self.pk} of task {self.task_id} ({self.status})"


class Policy(models.Model):
    """An automation policy (api.md §5.5); `rules` is the document of environments.policy_engine."""

    class Status(models.TextChoices):
        ACTIVE = "active"
        DRAFT = "draft"

    id = models.CharField(primary_key=True, max_length=24, default=object_id, editable=False)
    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, related_name="policies")
    name = models.CharField(max_length=100)
    description = models.CharField(max_length=500, blank=True)
    llm_role = models.TextField(max_length=2000, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    rules = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "policies"

    def __str__(self) -> str:
        return f"{self.name} ({self.pk})"

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        from .policy_engine import PolicyInvalid, validate_rules

        try:
            self.rules = validate_rules(self.rules or {})
        except PolicyInvalid as exc:
            raise ValidationError({"rules": str(exc)}) from exc


class PolicyAuditEntry(models.Model):
    """One policy decision: append-only (no update or delete path in the code or the admin)."""

    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, related_name="policy_audit")
    session_id = models.CharField(max_length=32, db_index=True)
    task_id = models.CharField(max_length=32, blank=True)
    policy_id = models.CharField(max_length=24)
    source = models.CharField(max_length=10, default="agent")  # agent | human | network
    action = models.CharField(max_length=40)
    category = models.CharField(max_length=20, blank=True)
    target = models.TextField(blank=True)
    url = models.TextField(blank=True)
    rule = models.TextField(blank=True)
    decision = models.CharField(max_length=10)
    response = models.TextField(blank=True)  # the human's answer to a guardrail
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.decision} {self.action} in {self.session_id}"


class Trigger(models.Model):
    """A scheduled task (api.md §5.8, `/cron-jobs`): runs under an environment, by Celery beat."""

    class ScheduleType(models.TextChoices):
        AT = "at"
        EVERY = "every"
        CRON = "cron"

    class Status(models.TextChoices):
        ACTIVE = "active"
        PAUSED = "paused"

    id = models.CharField(primary_key=True, max_length=24, default=object_id, editable=False)
    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, related_name="triggers")
    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="triggers")
    policy_id = models.CharField(max_length=24, blank=True)
    name = models.CharField(max_length=200)
    description = models.CharField(max_length=1000, blank=True)
    schedule_type = models.CharField(max_length=5, choices=ScheduleType.choices)
    schedule_at = models.DateTimeField(null=True, blank=True)
    schedule_interval = models.CharField(max_length=20, blank=True)
    schedule_cron = models.CharField(max_length=100, blank=True)
    timezone = models.CharField(max_length=64, default="UTC")
    prompt = models.TextField()
    starting_url = models.TextField(blank=True)
    output_type = models.CharField(max_length=20, default="text")
    output_schema = models.JSONField(null=True, blank=True)
    delivery_mode = models.CharField(max_length=10, default="webhook")
    webhook = models.JSONField(null=True, blank=True)  # includes `auth`, never shown back
    retry_policy = models.JSONField(null=True, blank=True)
    max_consecutive_failures = models.PositiveIntegerField(default=5)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    next_run_at = models.DateTimeField(null=True, blank=True, db_index=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.pk})"


class TriggerRun(models.Model):
    class Status(models.TextChoices):
        RUNNING = "running"
        COMPLETED = "completed"
        FAILED = "failed"

    id = models.CharField(primary_key=True, max_length=24, default=object_id, editable=False)
    trigger = models.ForeignKey(Trigger, on_delete=models.CASCADE, related_name="runs")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    manual = models.BooleanField(default=False)
    session_id = models.CharField(max_length=32, blank=True)
    task_id = models.CharField(max_length=32, blank=True, db_index=True)
    result = models.TextField(blank=True)
    error = models.TextField(blank=True)
    code = models.CharField(max_length=40, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"run {self.pk} of {self.trigger_id} ({self.status})"
