"""The Celery app: workers on the `browsers` queue host sessions; beat runs the sweeps."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from django.conf import settings

from sessions_app.worker_steps import Consuming, Runtime

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "enigma_site.settings")

app = Celery("enigma")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
app.steps["consumer"].add(Consuming)
app.steps["worker"].add(Runtime)


@app.on_after_configure.connect
def _beat_schedule(sender: Celery, **kwargs: Any) -> None:
    """Set the beat schedule once Django's settings are loaded (the sweep's interval is one)."""
    sender.conf.beat_schedule = {
        # Orphan uploads (no environment) live one hour (api.md §5.2); checked every 5 minutes.
        "environments.delete_orphan_files": {"task": "environments.delete_orphan_files", "schedule": 300.0},
        # Downloads older than ENIGMA_DOWNLOAD_RETENTION_S (7 days) are deleted, file and row.
        "environments.delete_expired_downloads": {"task": "environments.delete_expired_downloads", "schedule": 600.0},
        # Triggers (/cron-jobs) start within this tick of their time.
        "environments.run_due_triggers": {"task": "environments.run_due_triggers", "schedule": 15.0},
        # Orphaned sessions are found even when no browser worker is alive (the ops worker runs it).
        "sessions.sweep": {"task": "sessions.sweep", "schedule": settings.ENIGMA_SWEEP_INTERVAL_S},
        # Recordings older than ENIGMA_RECORDING_RETENTION_DAYS are deleted, file and row.
        "recordings.delete_expired": {"task": "recordings.delete_expired", "schedule": 3600.0},
    }
