"""Environments (persistent browser profiles) and stored files."""

from __future__ import annotations

import secrets

from django.db import models


def object_id() -> str:
    """24 hex characters, the shape of the documented ids (api.md §0.5); 96 random bits."""
    return secrets.token_hex(12)


class Environment(models.Model):
    """A named browser profile (Playwright storage state on disk) plus persistent files."""

    class Status(models.TextChoices):
        EMPTY = "empty"
        UPLOADING = "uploading"
        READY = "ready"

    MAX_PER_TEAM = 20
    NAME_MAX = 100
    DESCRIPTION_MAX = 500

    id = models.CharField(primary_key=True, max_length=24, default=object_id, editable=False)
    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, related_name="environments")
    name = models.CharField(max_length=NAME_MAX)
    description = models.CharField(max_length=DESCRIPTION_MAX, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.EMPTY)
    blob_size = models.BigIntegerField(default=0)
    blob_uploaded_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    usage_count = models.PositiveIntegerField(default=0)
    # The session that holds the environment (one at a time); it is free again once that session
    # has ended and saved its state (see services.environment_claim).
    session_id = models.CharField(max_length=32, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.pk})"


class StoredFile(models.Model):
    """A file on disk under MEDIA_ROOT: uploaded for tasks, or downloaded by the browser."""

    class Kind(models.TextChoices):
        UPLOAD = "upload"
        DOWNLOAD = "download"

    id = models.CharField(primary_key=True, max_length=24, default=object_id, editable=False)
    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, related_name="stored_files")
    # Without an environment an upload is an orphan, deleted after an hour (api.md §5.2).
    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, null=True, blank=True, related_name="files")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.UPLOAD)
    original_name = models.CharField(max_length=255)
    size = models.BigIntegerField(default=0)
    path = models.CharField(max_length=500)  # relative to MEDIA_ROOT
    session_id = models.CharField(max_length=32, blank=True, db_index=True)
    task_id = models.CharField(max_length=32, blank=True, db_index=True)
    source_url = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"{self.original_name} ({self.pk})"
