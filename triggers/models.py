"""Triggers: scheduled tasks (api.md §5.8, `/cron-jobs`) and their runs."""

from __future__ import annotations

from django.db import models

from environments.models import Environment, object_id


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
        db_table = "environments_trigger"  # the table of before the app split
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
        db_table = "environments_triggerrun"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"run {self.pk} of {self.trigger_id} ({self.status})"
