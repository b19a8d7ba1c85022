"""Writes of policies and their audit trail: one function per use case."""

from __future__ import annotations

from typing import Any

from accounts.models import Team

from .models import Policy, PolicyAuditEntry


def policy_create(*, team: Team, fields: dict[str, Any]) -> Policy:
    """Create a policy from PolicyInputSerializer's fields (`rules`, `name`, ...)."""
    return Policy.objects.create(team=team, **fields)


def policy_update(*, policy: Policy, fields: dict[str, Any]) -> Policy:
    """Set the given fields (the rules always: absent rule groups become empty)."""
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
