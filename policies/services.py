"""Writes of policies and their audit trail: one function per use case."""

from __future__ import annotations

from typing import Any

from accounts.models import Team
from enigma_site.errors import InvalidParameter, MissingField

from . import engine
from .models import Policy, PolicyAuditEntry


def _policy_fields(data: dict[str, Any]) -> dict[str, Any]:
    try:
        rules = engine.validate_rules(data)
    except engine.PolicyInvalid as exc:
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
