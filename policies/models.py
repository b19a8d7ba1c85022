"""Automation policies (api.md §5.5) and their audit trail."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models

from environments.models import object_id

from .engine import PolicyInvalid, validate_rules


class Policy(models.Model):
    """An automation policy (api.md §5.5); `rules` is the document of policies.engine."""

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
        db_table = "environments_policy"  # the table of before the app split
        ordering = ["-created_at"]
        verbose_name_plural = "policies"

    def __str__(self) -> str:
        return f"{self.name} ({self.pk})"

    def clean(self) -> None:
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
        db_table = "environments_policyauditentry"
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.decision} {self.action} in {self.session_id}"
