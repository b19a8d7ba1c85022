"""Reads of policies and their audit trail, always scoped to a team."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from accounts.models import Team
from enigma_site.api import timestamp

from .errors import PolicyNotFound
from .models import Policy, PolicyAuditEntry


def _team_id(team: Team | int) -> int:
    return team if isinstance(team, int) else team.pk


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
    return (
        Policy.objects.filter(pk=policy_id, status=Policy.Status.ACTIVE).values_list("llm_role", flat=True).first()
        or ""
    )


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
        "createdAt": timestamp(policy.created_at),
        "updatedAt": timestamp(policy.updated_at),
    }


def audit_body(entry: PolicyAuditEntry) -> dict[str, Any]:
    return {
        "id": entry.pk,
        "timestamp": timestamp(entry.created_at),
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
