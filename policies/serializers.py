"""Request and response shapes of the policy endpoints (api.md §5.5). The rule document
(`defaultAction`, `domainRules`, `actionRules`) is checked by `policies.engine.validate_rules`,
the one parser of it (the admin uses it too); the shapes below describe it for the document."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import ErrorDetail, ValidationError

from enigma_site.errors import invalid
from enigma_site.serializers import AnyField, ChoiceField, LooseCharField, Serializer

from . import engine
from .models import Policy

TEXT_LIMITS = {"name": 100, "description": 500, "llmRole": 2000}


class DomainEntrySerializer(serializers.Serializer):
    pattern = serializers.CharField(
        max_length=500, help_text="`example.com` (that host), `*.example.com` (subdomains), `*example.com` (both)"
    )
    action = serializers.ChoiceField(
        engine.ACTIONS, required=False, help_text="default: allow in an allowlist, else block"
    )


class DomainRulesSerializer(serializers.Serializer):
    mode = serializers.ChoiceField(engine.DOMAIN_MODES, required=False, default="allow_all")
    entries = DomainEntrySerializer(many=True, required=False)


class ActionRuleSerializer(serializers.Serializer):
    category = serializers.ChoiceField(engine.CATEGORIES)
    action = serializers.ChoiceField(engine.ACTIONS)
    urlPattern = serializers.CharField(required=False, help_text="navigation: a glob such as */admin/*")
    matchType = serializers.ChoiceField(engine.MATCH_TYPES, required=False, default="keyword")
    match = serializers.CharField(required=False, help_text="other categories: a keyword or a regex")
    scope = serializers.ChoiceField(engine.SCOPES, required=False, default="all")
    role = serializers.CharField(required=False, help_text="an ARIA role (button, link, textbox ...)")


@extend_schema_field(serializers.ChoiceField(engine.ACTIONS))
class DefaultActionField(AnyField):
    pass


@extend_schema_field(DomainRulesSerializer)
class DomainRulesField(AnyField):
    pass


@extend_schema_field(ActionRuleSerializer(many=True))
class ActionRulesField(AnyField):
    pass


class PolicyInputSerializer(Serializer):
    """A policy body of POST /policies (`creating`: name required) and PUT /policies/<id>
    (fields given replace the policy's; the rules are replaced by the body's)."""

    defaultAction = DefaultActionField(required=False, allow_null=True, help_text="for categories without rules")
    domainRules = DomainRulesField(required=False, allow_null=True)
    actionRules = ActionRulesField(required=False, allow_null=True)
    name = LooseCharField(required=False, allow_null=True, help_text="at most 100 characters (required on create)")
    description = LooseCharField(required=False, allow_null=True, help_text="at most 500 characters")
    llmRole = LooseCharField(
        required=False, allow_null=True, help_text="at most 2000 characters, given to the agent before the rules"
    )
    status = ChoiceField(Policy.Status.values, required=False, message="must be active or draft")

    def __init__(self, *args: Any, creating: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.creating = creating

    def early_errors(self, data: Mapping[str, Any], order: dict[str, int]) -> list[tuple[float, str, Any]]:
        try:
            engine.validate_rules(dict(data))
        except engine.PolicyInvalid as exc:  # before the other fields
            return [(-1.0, exc.parameter, [ErrorDetail(str(exc), code="message")])]
        return []

    def _text(self, key: str, value: Any) -> Any:
        limit = TEXT_LIMITS[key]
        if value is not None and (not isinstance(value, str) or len(value) > limit):
            raise invalid(f"a string of at most {limit} characters")
        return value

    def validate_name(self, value: Any) -> Any:
        return self._text("name", value)

    def validate_description(self, value: Any) -> Any:
        return self._text("description", value)

    def validate_llmRole(self, value: Any) -> Any:  # noqa: N802 (the field's name)
        return self._text("llmRole", value)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """The model's fields to set: `rules` always, the others when given (not null)."""
        fields: dict[str, Any] = {"rules": engine.validate_rules(attrs)}
        for key, attr in (("name", "name"), ("description", "description"), ("llmRole", "llm_role")):
            if attrs.get(key) is not None:
                fields[attr] = attrs[key].strip() if key == "name" else attrs[key]
        if "status" in attrs:
            fields["status"] = attrs["status"]
        if (self.creating or "name" in attrs) and not fields.get("name"):
            raise ValidationError({"name": [ErrorDetail("Policy name is required", code="required")]})
        return fields


# ----- response shapes -----------------------------------------------------------------------


class PolicySerializer(serializers.Serializer):
    _id = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField()
    llmRole = serializers.CharField()
    status = serializers.ChoiceField(Policy.Status.values)
    defaultAction = serializers.ChoiceField(engine.ACTIONS)
    domainRules = DomainRulesSerializer()
    actionRules = ActionRuleSerializer(many=True)
    createdAt = serializers.DateTimeField()
    updatedAt = serializers.DateTimeField()


class PolicyListSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    policies = PolicySerializer(many=True)


class PolicyResponseSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    message = serializers.CharField(required=False)
    policy = PolicySerializer()


class AuditEntrySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    timestamp = serializers.DateTimeField()
    sessionId = serializers.CharField()
    taskId = serializers.CharField(allow_null=True)
    policyId = serializers.CharField()
    source = serializers.CharField(help_text="agent or human")  # type: ignore[assignment]  # a field, not Field.source
    action = serializers.CharField()
    category = serializers.CharField()
    target = serializers.CharField()
    url = serializers.CharField()
    matchedRule = serializers.CharField(allow_null=True)
    decision = serializers.ChoiceField(engine.ACTIONS)
    response = serializers.CharField(allow_null=True, help_text="the answer to a guardrail")


class SessionPolicyAuditSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    sessionId = serializers.CharField()
    policyId = serializers.CharField(allow_null=True)
    entries = AuditEntrySerializer(many=True)
