"""Response shapes of the recording endpoints (for /openapi.json)."""

from __future__ import annotations

from rest_framework import serializers

from .models import Recording


class RecordingSerializer(serializers.Serializer):
    state = serializers.ChoiceField(Recording.State.values)
    durationMs = serializers.IntegerField()
    sizeBytes = serializers.IntegerField()
    frames = serializers.IntegerField()
    startedAt = serializers.DateTimeField()
    url = serializers.URLField(allow_null=True, help_text="a signed link to the video once it is ready")


class RecordingStepSerializer(serializers.Serializer):
    t = serializers.FloatField(help_text="seconds into the recording")
    eventId = serializers.IntegerField()
    type = serializers.CharField()
    name = serializers.CharField(allow_null=True)
    target = serializers.CharField(allow_null=True)
    thought = serializers.CharField(allow_null=True)


class RecordingStepsSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    sessionId = serializers.CharField()
    recording = RecordingSerializer()
    steps = RecordingStepSerializer(many=True)
