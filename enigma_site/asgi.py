"""ASGI entry point: HTTP through Django, websockets through Channels, and two mounted apps
(/mcp: the MCP server; /socket.io/: Socket.IO) dispatched by path prefix."""

from __future__ import annotations

import importlib
import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "enigma_site.settings")
django_asgi_app = get_asgi_application()

from . import access_log  # noqa: E402

access_log.install()  # no API key, viewer token or session id in the access log

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from .routing import websocket_urlpatterns  # noqa: E402


class Lazy:
    """Import an ASGI app on first use, so a missing optional module does not break startup."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.app is None:
            module, _, attr = self.path.partition(":")
            self.app = getattr(importlib.import_module(module), attr)
        await self.app(scope, receive, send)


# Prefix -> app; the realtime and MCP modules add theirs here.
MOUNTS: list[tuple[str, Any]] = [
    ("/mcp", Lazy("integrations.mcp_server:asgi_app")),
    ("/socket.io", Lazy("sessions_app.realtime.sio:asgi_app")),
]


class PathDispatch:
    def __init__(self, default: Any) -> None:
        self.default = default

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        for prefix, app in MOUNTS:
            if path == prefix or path.startswith(prefix + "/"):
                await app(scope, receive, send)
                return
        await self.default(scope, receive, send)


application = ProtocolTypeRouter(
    {
        "http": PathDispatch(django_asgi_app),
        "websocket": PathDispatch(URLRouter(websocket_urlpatterns)),
    }
)
