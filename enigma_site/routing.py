"""Websocket routes (Socket.IO and the dashboard's live view)."""

from __future__ import annotations

from typing import Any

websocket_urlpatterns: list[Any] = []
