"""Request and response shapes of the viewer-link endpoint (for /openapi.json; the view checks
the body itself)."""

from __future__ import annotations

from rest_framework import serializers

from ..streaming import VIEWER_TOKEN_MAX_AGE_S


class ViewerLinkRequestSerializer(serializers.Serializer):
    control = serializers.BooleanField(required=False, default=False, help_text="true: the link may control")
    ttlSeconds = serializers.IntegerField(required=False, min_value=60, max_value=VIEWER_TOKEN_MAX_AGE_S)


class ViewerLinkSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    webViewURL = serializers.URLField()
    control = serializers.BooleanField()
    expiresAt = serializers.DateTimeField()
