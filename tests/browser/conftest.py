"""Fixtures for the browser runtime: one real Chromium for the whole run and two tiny HTTP
servers on 127.0.0.1 (the site under test and a "tracker" that records every hit)."""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
import pytest_asyncio

from agents.browser import BrowserHost, EgressSettings, NetworkPolicy

CHROMIUM = os.environ.get("ENIGMA_CHROMIUM_PATH", "/usr/lib/chromium/chromium")
WARM_POOL_SIZE = 2
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost"})

PAGES: dict[str, str] = {
    "/": "<title>Home</title><h1>home</h1>",
    "/storage": """<title>Storage</title><script>
        localStorage.setItem('token', 'secret-ls');
        document.cookie = 'js_cookie=1; path=/';
    </script>""",
    "/read": """<title>Read</title><script>
        document.title = 'ls=' + localStorage.getItem('token') + ';c=' + document.cookie;
    </script>""",
    "/click": """<title>Click</title><body style="margin:0">
        <button id="b" style="position:absolute;left:100px;top:200px;width:200px;height:50px"
          onclick="window.clicks=(window.clicks||0)+1"
          ondblclick="window.dbl=(window.dbl||0)+1">press</button></body>""",
    "/form": """<title>Form</title><body style="margin:0">
        <form action="/submitted" method="get"><input id="q" name="q" autofocus
          style="position:absolute;left:10px;top:10px;width:300px;height:30px"></form>
        </body>""",
    "/submitted": "<title>Submitted</title>",
    "/animated": """<title>Animated</title><body style="margin:0"><div id="d"
        style="width:1024px;height:445px"></div><script>
        let n = 0;
        (function step() { n++;
          document.getElementById('d').style.background = 'hsl(' + (n * 7 % 360) + ',80%,50%)';
          requestAnimationFrame(step); })();
    </script></body>""",
}


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        self.server.hits.append(self.path)
        if path == "/set-cookie":
            self._send(200, "<title>Cookie</title>", [("Set-Cookie", "sid=abc123; Path=/")])
        elif path == "/redirect":
            target = urlsplit(self.path).query.removeprefix("to=")
            self._send(302, "", [("Location", target)])
        elif path == "/download":
            self._send(
                200,
                "report",
                [
                    ("Content-Type", "application/octet-stream"),
                    ("Content-Disposition", 'attachment; filename="report.txt"'),
                ],
            )
        elif path == "/pixel.png":
            self._send(200, "", [("Content-Type", "image/png")])
        elif path == "/tracked":
            port = urlsplit(self.path).query.removeprefix("port=")
            other = f"http://localhost:{port}"
            body = f"""<title>Tracked</title><img src="{other}/pixel.png">
                <script>fetch('{other}/api').catch(() => {{}})
                .finally(() => {{ document.title = 'done'; }});</script>"""
            self._send(200, body)
        elif path in PAGES:
            self._send(200, PAGES[path])
        else:
            self._send(404, "<title>Not found</title>")

    def _send(self, status: int, body: str, headers: list[tuple[str, str]] = ()) -> None:  # type: ignore[assignment]
        data = body.encode()
        self.send_response(status)
        names = {name.lower() for name, _ in headers}
        if "content-type" not in names:
            self.send_header("Content-Type", "text/html; charset=utf-8")
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.hits: list[str] = []


@dataclass
class LocalSite:
    """A running local HTTP server; `url(path)` on 127.0.0.1, `hits` lists requested paths."""

    server: _Server
    hits: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.hits = self.server.hits

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


def _serve() -> Iterator[LocalSite]:
    server = _Server()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield LocalSite(server)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def site() -> Iterator[LocalSite]:
    yield from _serve()


@pytest.fixture(scope="session")
def tracker() -> Iterator[LocalSite]:
    yield from _serve()


@pytest.fixture(scope="session")
def own_service() -> Iterator[LocalSite]:
    """Stands for one of the product's own listeners (web port, Redis, database)."""
    yield from _serve()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def host(own_service: LocalSite) -> AsyncIterator[BrowserHost]:
    browser_host = BrowserHost(
        chromium_path=CHROMIUM,
        warm_pool_size=WARM_POOL_SIZE,
        egress=EgressSettings(own_addresses=(f"127.0.0.1:{own_service.port}",)),
    )
    await browser_host.start()
    yield browser_host
    await browser_host.stop()


@dataclass
class Blocked:
    """Collects on_blocked calls."""

    calls: list[tuple[str, str]] = field(default_factory=list)

    def __call__(self, url: str, reason: str) -> None:
        self.calls.append((url, reason))


@pytest.fixture
def blocked() -> Blocked:
    return Blocked()


@pytest.fixture
def make_policy(blocked: Blocked) -> Callable[..., NetworkPolicy]:
    def make(avoid_domains: list[str] | None = None, allowed: frozenset[str] = LOCAL_HOSTS) -> NetworkPolicy:
        return NetworkPolicy(
            avoid_domains=avoid_domains or [],
            allowed_private_hosts=allowed,
            on_blocked=blocked,
        )

    return make
