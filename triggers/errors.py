"""Domain errors of this app (rendered by enigma_site.errors)."""

from __future__ import annotations

from enigma_site.errors import ApiError


class TriggerNotFound(ApiError):
    status_code = 404
    code = "CRON_JOB_NOT_FOUND"
    default_message = "Cron job not found"


class TriggerRunNotFound(ApiError):
    status_code = 404
    code = "RUN_NOT_FOUND"
    default_message = "Run not found"
