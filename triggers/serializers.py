"""Request and response shapes of the trigger endpoints, the `/cron-jobs` of api.md §5.8.

A body is checked in the order of the declared fields and the first error is the one the client
sees (`enigma_site.errors.validation_error`); an environment of no one's or another team's is a
404, as if it were checked on its own. The schedule fields are checked last, by the service that
computes the next run (`triggers.services`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import ErrorDetail, ValidationError

from enigma_site.errors import invalid
from enigma_site.serializers import AnyField, ChoiceField, LooseCharField, Serializer
from environments import selectors as environment_selectors
from environments.errors import EnvironmentNotFound
from environments.models import Environment
from policies.selectors import policy_active_exists
from sessions_app.serializers import PaginationSerializer, WebhookSerializer, normalize_url
from sessions_app.webhook_address import url_block_reason

from .models import Trigger, TriggerRun

OUTPUT_TYPES = ("text", "structured", "structured_json", "structured_csv")
DELIVERY_MODES = ("webhook", "bot", "both")
SCHEDULE_KEYS = frozenset({"scheduleType", "scheduleAt", "scheduleInterval", "scheduleCron", "timezone"})
_ENVIRONMENT_NOT_FOUND = "environment_not_found"
_WEBHOOK_REQUIRED = "webhook config is required when deliveryMode includes webhook"


@extend_schema_field(OpenApiTypes.STR)
class RequiredTextField(serializers.Field):
    """A non-blank string, kept stripped; anything else is `message` (400 MISSING_REQUIRED_FIELD)."""

    def __init__(self, message: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.message = message
        self.error_messages["required"] = message

    def validate_empty_values(self, data: Any) -> tuple[bool, Any]:
        if data is None:
            raise ValidationError(self.message, code="required")
        return super().validate_empty_values(data)

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str) or not data.strip():
            raise ValidationError(self.message, code="required")
        return data.strip()

    def to_representation(self, value: Any) -> Any:
        return value


@extend_schema_field(serializers.IntegerField(min_value=1, max_value=100))
class FailuresField(AnyField):
    pass


@extend_schema_field(serializers.ChoiceField(Trigger.ScheduleType.values))
class ScheduleTypeField(AnyField):
    pass


@extend_schema_field({"type": "object", "description": "a JSON Schema (structured output)"})
class ObjectField(AnyField):
    pass


class TriggerInputSerializer(Serializer):
    """POST /cron-jobs (`creating`: name, prompt, environmentId and a schedule required) and
    PUT /cron-jobs/<id> (the fields given). `instance`: the trigger the body applies to."""

    name = RequiredTextField("name is required", allow_null=True)
    prompt = RequiredTextField("prompt is required", allow_null=True, help_text="the task (required)")
    taskDetails = LooseCharField(required=False, allow_null=True, help_text="older name of prompt")
    environmentId = LooseCharField(
        required=False, allow_null=True, help_text="the environment it runs under (required)"
    )
    policyId = LooseCharField(required=False, allow_null=True)
    description = LooseCharField(required=False, allow_null=True, help_text="at most 1000 characters (cut)")
    startingUrl = LooseCharField(required=False, allow_null=True)
    outputType = ChoiceField(OUTPUT_TYPES, required=False, message="must be text or structured")
    outputSchema = ObjectField(required=False, allow_null=True)
    deliveryMode = ChoiceField(DELIVERY_MODES, required=False, message="must be webhook, bot or both")
    webhook = WebhookSerializer(required=False, allow_null=True, help_text="required: delivery is by webhook")
    retryPolicy = ObjectField(required=False, allow_null=True)
    maxConsecutiveFailures = FailuresField(required=False, allow_null=True, help_text="default 5; then it pauses")
    scheduleType = ScheduleTypeField(required=False, allow_null=True, help_text="required on create")
    scheduleAt = LooseCharField(required=False, allow_null=True, help_text='ISO 8601, for "at"')
    scheduleInterval = LooseCharField(required=False, allow_null=True, help_text='"30m", "2h", "1d", for "every"')
    scheduleCron = LooseCharField(required=False, allow_null=True, help_text='5 fields, for "cron"')
    timezone = LooseCharField(required=False, allow_null=True, help_text="IANA name (default UTC)")

    def __init__(self, *args: Any, creating: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.creating = creating
        self.fields["name"].required = self.fields["prompt"].required = creating

    @property
    def trigger(self) -> Trigger:
        assert isinstance(self.instance, Trigger)
        return self.instance

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if isinstance(data, Mapping) and "taskDetails" in data and "prompt" not in data:
            data = {**data, "prompt": data["taskDetails"]}
        try:
            return super().to_internal_value(data)
        except ValidationError as exc:
            first = next(iter(exc.detail.values()), None) if isinstance(exc.detail, dict) else None
            if isinstance(first, list) and first and getattr(first[0], "code", None) == _ENVIRONMENT_NOT_FOUND:
                raise EnvironmentNotFound() from None
            raise

    def early_errors(self, data: Mapping[str, Any], order: dict[str, int]) -> list[tuple[float, str, Any]]:
        errors: list[tuple[float, str, Any]] = []
        if self.creating and "environmentId" not in data:
            errors.append((order["environmentId"], "environmentId", [self._message("Valid environmentId is required")]))
        mode = data.get("deliveryMode", self.trigger.delivery_mode)
        webhook = data.get("webhook", self.trigger.webhook)
        if mode in ("webhook", "both") and not webhook:
            errors.append((order["webhook"] + 0.5, "webhook", [self._message(_WEBHOOK_REQUIRED)]))
        elif "webhook" not in data and webhook:  # the saved one, under today's rules
            reason = _block_reason(webhook["url"])
            if reason is not None:
                errors.append((order["webhook"] + 0.5, "webhook", {"url": [_blocked(reason)]}))
        return errors

    @staticmethod
    def _message(message: str) -> ErrorDetail:
        return ErrorDetail(message, code="message")

    def validate_environmentId(self, value: Any) -> Environment:  # noqa: N802 (the field's name)
        if not isinstance(value, str) or not value:
            raise ValidationError("Valid environmentId is required", code="message")
        try:
            return environment_selectors.environment_get(team=self.trigger.team_id, environment_id=value)
        except EnvironmentNotFound:
            raise ValidationError("Environment not found", code=_ENVIRONMENT_NOT_FOUND) from None

    def validate_policyId(self, value: Any) -> Any:  # noqa: N802
        policy_id = value or ""
        if policy_id and not policy_active_exists(team=self.trigger.team_id, policy_id=policy_id):
            raise ValidationError(f"Policy {policy_id} not found (or not active)", code="message")
        return policy_id

    def validate_description(self, value: Any) -> str:
        return str(value or "")[:1000]

    def validate_startingUrl(self, value: Any) -> str:  # noqa: N802
        if not value:
            return ""
        if not isinstance(value, str):
            raise invalid("must be a string")
        return normalize_url(value)

    def validate_outputType(self, value: str) -> str:  # noqa: N802
        return "structured_json" if value == "structured" else value

    def validate_deliveryMode(self, value: str) -> str:  # noqa: N802
        if value != "webhook":
            raise ValidationError("Chat-bot delivery is not available on this installation", code="message")
        return value

    def validate_webhook(self, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value:
            reason = _block_reason(value["url"])
            if reason is not None:
                raise ValidationError({"url": [_blocked(reason)]})
        return value

    def validate_maxConsecutiveFailures(self, value: Any) -> int:  # noqa: N802
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
            raise invalid("an integer from 1 to 100")
        return value


def _block_reason(url: str) -> str | None:
    return url_block_reason(url, allowed_hosts=frozenset(settings.ENIGMA_ALLOWED_PRIVATE_HOSTS), resolve=False)


def _blocked(reason: str) -> ErrorDetail:
    return ErrorDetail(f"this address may not receive webhooks ({reason})", code="invalid")


# ----- response shapes -----------------------------------------------------------------------


class TriggerWebhookSerializer(serializers.Serializer):
    name = serializers.CharField()
    url = serializers.URLField()
    auth = serializers.CharField(allow_null=True, help_text='"***" when set')
    submittedData = serializers.CharField()


class TriggerSerializer(serializers.Serializer):
    _id = serializers.CharField()
    userId = serializers.CharField()
    environmentId = serializers.CharField()
    policyId = serializers.CharField(allow_null=True)
    name = serializers.CharField()
    description = serializers.CharField()
    scheduleType = serializers.ChoiceField(Trigger.ScheduleType.values)
    scheduleAt = serializers.DateTimeField(allow_null=True)
    scheduleInterval = serializers.CharField(allow_null=True)
    scheduleCron = serializers.CharField(allow_null=True)
    timezone = serializers.CharField()
    prompt = serializers.CharField()
    startingUrl = serializers.CharField(allow_null=True)
    outputType = serializers.CharField()
    outputSchema = serializers.JSONField(allow_null=True)
    deliveryMode = serializers.CharField()
    webhook = TriggerWebhookSerializer(allow_null=True)
    retryPolicy = serializers.JSONField(allow_null=True)
    maxConsecutiveFailures = serializers.IntegerField()
    status = serializers.ChoiceField(Trigger.Status.values)
    nextRunAt = serializers.DateTimeField(allow_null=True)
    consecutiveFailures = serializers.IntegerField()
    createdAt = serializers.DateTimeField()


class RunSerializer(serializers.Serializer):
    _id = serializers.CharField()
    cronJobId = serializers.CharField()
    status = serializers.ChoiceField(TriggerRun.Status.values)
    manual = serializers.BooleanField()
    sessionId = serializers.CharField(allow_null=True)
    taskId = serializers.CharField(allow_null=True)
    result = serializers.CharField(allow_null=True)
    error = serializers.CharField(allow_null=True)
    code = serializers.CharField(allow_null=True)
    createdAt = serializers.DateTimeField()
    completedAt = serializers.DateTimeField(allow_null=True)


class TriggerListSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    cronJobs = TriggerSerializer(many=True)


class TriggerResponseSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    cronJob = TriggerSerializer()


class TriggerDetailSerializer(TriggerResponseSerializer):
    recentRuns = RunSerializer(many=True, help_text="the 10 most recent")


class TriggerPausedStateSerializer(serializers.Serializer):
    _id = serializers.CharField()
    status = serializers.ChoiceField(Trigger.Status.values)


class TriggerPausedSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    cronJob = TriggerPausedStateSerializer()


class TriggerResumedStateSerializer(TriggerPausedStateSerializer):
    consecutiveFailures = serializers.IntegerField()
    nextRunAt = serializers.DateTimeField(allow_null=True)


class TriggerResumedSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    cronJob = TriggerResumedStateSerializer()


class RunListSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    runs = RunSerializer(many=True)
    pagination = PaginationSerializer()


class RunResponseSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    run = RunSerializer()


class RunsQuerySerializer(serializers.Serializer):
    page = serializers.IntegerField(required=False, min_value=1, default=1)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=50, default=20)
