"""Websocket routes (Socket.IO is mounted by path in asgi.py; this is the dashboard's live view)."""

from __future__ import annotations

from typing import Any

from django.urls import re_path

from sessions_app.realtime.consumers import ViewerConsumer

websocket_urlpatterns: list[Any] = [
    re_path(r"^ws/sessions/(?P<session_id>[0-9a-f]{32})/?$", ViewerConsumer.as_asgi()),
]
