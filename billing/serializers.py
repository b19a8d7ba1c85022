"""Response shapes of the account endpoints (what `/openapi.json` shows)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rest_framework import serializers

from . import selectors

if TYPE_CHECKING:
    Serializer = serializers.Serializer[Any]
    Field = serializers.Field[Any, Any, Any, Any]
else:
    Serializer = serializers.Serializer


class FromToSerializer(Serializer):
    """Its fields `start` and `end` are named `from` and `to` (Python cannot name an attribute
    `from`)."""

    def get_fields(self) -> dict[str, Field]:
        fields = super().get_fields()
        return {"from" if k == "start" else "to" if k == "end" else k: v for k, v in fields.items()}


class UsageTotalsSerializer(Serializer):
    cost = serializers.FloatField(help_text="USD")
    costMicros = serializers.IntegerField(help_text="exact, in micro-dollars")
    inputTokens = serializers.IntegerField()
    outputTokens = serializers.IntegerField()
    computeTime = serializers.FloatField(help_text="seconds")
    entries = serializers.IntegerField(help_text="ledger entries counted")


class AccountUsageTotalsSerializer(FromToSerializer, UsageTotalsSerializer):
    start = serializers.DateTimeField(help_text="start of this month (UTC)")
    end = serializers.DateTimeField(help_text="now")


class TeamSerializer(Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class PricesSerializer(Serializer):
    inputPerMillionTokens = serializers.FloatField(help_text="USD")
    outputPerMillionTokens = serializers.FloatField(help_text="USD")
    computePerMinute = serializers.FloatField(help_text="USD")


class AccountSerializer(Serializer):
    success = serializers.BooleanField()
    team = TeamSerializer()
    balance = serializers.FloatField(help_text="USD")
    balanceMicros = serializers.IntegerField()
    currency = serializers.CharField()
    usage = AccountUsageTotalsSerializer()
    prices = PricesSerializer()


class UsageQuerySerializer(FromToSerializer):
    start = serializers.DateField(required=False, help_text="first UTC day (default: the 1st of this month)")
    end = serializers.DateField(required=False, help_text="last UTC day, inclusive (default: today)")
    group = serializers.ChoiceField(selectors.USAGE_GROUPS, required=False, default="day")


class ApiKeyRefSerializer(Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    key = serializers.CharField(help_text="the key's display form (prefix only)")


class UsageRowSerializer(UsageTotalsSerializer):
    day = serializers.DateField(required=False, help_text="group=day")
    apiKey = ApiKeyRefSerializer(required=False, allow_null=True, help_text="group=key")
    sessionId = serializers.CharField(required=False, allow_null=True, help_text="group=session")


class AccountUsageSerializer(FromToSerializer):
    success = serializers.BooleanField()
    start = serializers.DateField()
    end = serializers.DateField()
    group = serializers.ChoiceField(selectors.USAGE_GROUPS)
    usage = UsageRowSerializer(many=True)
    total = UsageTotalsSerializer()
