"""A session's recording: the MP4 kept in the file storage, made from the frames its worker spooled."""

from __future__ import annotations

from django.db import models


class Recording(models.Model):
    class State(models.TextChoices):
        RECORDING = "recording"  # the session runs; frames go to the worker's spool
        ENCODING = "encoding"  # the session ended; the MP4 is being made
        READY = "ready"
        FAILED = "failed"

    session = models.OneToOneField(
        "sessions_app.BrowserSession", on_delete=models.CASCADE, primary_key=True, related_name="recording"
    )
    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, related_name="recordings")
    state = models.CharField(max_length=12, choices=State.choices, default=State.RECORDING)
    started_at = models.DateTimeField()  # t = 0 of the video and of its steps
    ended_at = models.DateTimeField(null=True, blank=True)
    blob = models.CharField(max_length=300, blank=True)  # relative path in environments.storage
    duration_ms = models.BigIntegerField(default=0)
    frames = models.PositiveIntegerField(default=0)
    size_bytes = models.BigIntegerField(default=0)
    encode_ms = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    ready_at = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        indexes = [models.Index(fields=["state", "ended_at"])]

    def __str__(self) -> str:
        return f"recording of {self.session_id} ({self.state})"
