from __future__ import annotations

from django.apps import AppConfig


class VideoConfig(AppConfig):
    name = "video"
