"""Response shapes of the webhook endpoints (api.md §5.7)."""

from __future__ import annotations

from rest_framework import serializers

from .models import WebhookDelivery


class WebhookSecretSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    secret = serializers.CharField(help_text="whsec_...")
    header = serializers.CharField(help_text="the request header that carries the signature")
    format = serializers.CharField()
    toleranceSeconds = serializers.IntegerField(help_text="how old a signature a receiver should accept")


class DeliveryAttemptSerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    statusCode = serializers.IntegerField(allow_null=True)
    error = serializers.CharField(help_text='"" when the receiver answered')
    ms = serializers.IntegerField()


class DeliverySerializer(serializers.Serializer):
    deliveryId = serializers.CharField()
    name = serializers.CharField()
    url = serializers.CharField()
    submittedData = serializers.CharField()
    status = serializers.ChoiceField(WebhookDelivery.Status.values)
    attempts = serializers.IntegerField()
    log = DeliveryAttemptSerializer(many=True)
    createdAt = serializers.DateTimeField()
    deliveredAt = serializers.DateTimeField(allow_null=True)


class TaskDeliveriesSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    deliveries = DeliverySerializer(many=True)
