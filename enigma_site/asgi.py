"""ASGI entry point: HTTP through Django, websockets through Channels, and two mounted apps
(/mcp: the MCP server; /socket.io/: Socket.IO) dispatched by path prefix."""

from __future__ import annotations

import importlib
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import ThreadSensitiveContext
from django.conf import settings
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "enigma_site.settings")
django_asgi_app = get_asgi_application()

from . import access_log  # noqa: E402

access_log.install()  # no API key, viewer token or session id in the access log

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import get_resolver  # noqa: E402

from .gc_freeze import freeze_startup  # noqa: E402
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


class RequestThreads:
    """Django's HTTP handler with each request's sync code (middleware, DRF views, the ORM) on
    one of a few long-lived threads.

    Left alone, Django's ASGI handler gives every request a thread of its own, and with it a new
    database connection (connections are per thread) and a second thread to join the first:
    a third of a session poll's CPU, and a PostgreSQL connect per request whatever
    DATABASE_CONN_MAX_AGE says. Here a request takes an idle thread (its connection reused as
    DATABASE_CONN_MAX_AGE allows); when all ENIGMA_WEB_THREADS are busy (requests blocked on
    I/O), it gets one of its own as before, so a slow request never holds up another.

    A task a request leaves running (a WHEP stream's loops) must not make thread-sensitive
    sync_to_async calls once the request is over: asgiref refuses them (RuntimeError). Such work
    uses thread_sensitive=False or the loop's executor, as video/whep.py does.
    """

    def __init__(self, app: Any, size: int) -> None:
        self.app = app
        self.size = size
        self._idle: list[ThreadPoolExecutor] = []
        self._made = 0

    def _take(self) -> ThreadPoolExecutor | None:
        if self._idle:
            return self._idle.pop()  # the most recently used: its connection is the warm one
        if self._made >= self.size:
            return None
        self._made += 1
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="http")

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        executor = self._take()
        if executor is None:
            await self.app(scope, receive, send)
            return
        try:
            async with ThreadSensitiveContext(executor=executor):
                await self.app(scope, receive, send)
        finally:
            # A request cancelled mid-call leaves its sync code running: the next one queues behind it.
            self._idle.append(executor)


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
        "http": PathDispatch(RequestThreads(django_asgi_app, settings.ENIGMA_WEB_THREADS)),
        "websocket": PathDispatch(URLRouter(websocket_urlpatterns)),
    }
)

# The URL conf (and with it every view module) loads on the first request; load it now so it is
# frozen with the rest of start-up (enigma_site/gc_freeze.py).
get_resolver().url_patterns  # noqa: B018
freeze_startup("web process")
