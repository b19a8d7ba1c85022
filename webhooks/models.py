"""Webhook signing secrets and deliveries (api.md §5.7)."""

from __future__ import annotations

from django.db import models

from environments.models import object_id


class WebhookSecret(models.Model):
    """The per-team key that signs webhook deliveries (Enigma-Signature header)."""

    team = models.OneToOneField("accounts.Team", on_delete=models.CASCADE, related_name="webhook_secret")
    secret = models.CharField(max_length=80)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "environments_webhooksecret"  # the table of before the app split

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
        db_table = "environments_webhookdelivery"
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"webhook {self.pk} of task {self.task_id} ({self.status})"
