"""Websocket routes (Socket.IO is mounted by path in asgi.py; this is the live view's, keyed by a viewer token)."""

from __future__ import annotations

from typing import Any

from django.urls import re_path

from sessions_app.realtime.cdp_gateway import CdpGatewayConsumer
from sessions_app.realtime.consumers import ViewerConsumer

websocket_urlpatterns: list[Any] = [
    re_path(r"^ws/view/(?P<token>[A-Za-z0-9_-]{1,64})/?$", ViewerConsumer.as_asgi()),
    re_path(r"^cdp/(?P<token>[A-Za-z0-9_-]{1,64})/?$", CdpGatewayConsumer.as_asgi()),
]
