"""The Celery app: workers on the `browsers` queue host sessions; beat runs the sweeps."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "enigma_site.settings")

app = Celery("enigma")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
