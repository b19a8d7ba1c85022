"""The egress gate in the product: real worker, real Chromium, REST in, target logs and the
policy audit out."""

from __future__ import annotations

import http.server
import os
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from sessions_app.models import SessionEvent
from tests.conftest import SERVER_PORT, Api
from tests.helpers import new_task, start


class _Recorder(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802
        type(self).hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[tuple[int, list[str]]]:
    _Recorder.hits = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd.server_address[1], _Recorder.hits
    httpd.shutdown()


def _audit(api: Api, sid: str, *, source: str, count: int) -> list[dict[str, Any]]:
    deadline = time.time() + 10
    entries: list[dict[str, Any]] = []
    while time.time() < deadline:
        entries = [e for e in api.get(f"/sessions/{sid}/policy-audit").json()["entries"] if e["source"] == source]
        if len(entries) >= count:
            break
        time.sleep(0.1)
    return entries


def test_policy_domain_rules_hold_for_every_sub_resource_and_are_audited(
    api: Api, pages: str, recorder: tuple[int, list[str]]
) -> None:
    port, hits = recorder
    response = api.post(
        "/policies",
        {"name": "no localhost", "domainRules": {"mode": "blocklist", "entries": [{"pattern": "localhost"}]}},
    )
    assert response.status_code == 201, response.text
    session = start(api, policyId=response.json()["policy"]["_id"])
    sid = session["sessionId"]
    # The page is on 127.0.0.1 (allowed); its fetch() and new Image() go to localhost.
    done = new_task(api, sid, f"go to {pages}/avoid.html?port={port} then wait 1 seconds then extract the title")
    assert done["type"] == "task_completed", done
    assert hits == []
    entries = _audit(api, sid, source="network", count=2)
    urls = {e["url"] for e in entries}
    assert {f"http://localhost:{port}/pixel.png", f"http://localhost:{port}/api.json"} <= urls, entries
    assert {e["decision"] for e in entries} == {"block"}


def test_the_products_own_web_port_is_refused_even_on_an_allowed_host(api: Api, server: str) -> None:
    assert urlsplit(server).port == SERVER_PORT
    body = api.post("/start/run-task", {"taskDetails": f"go to {server}/admin/login/ then extract the title"}).json()
    assert body["status"] == "failed" and body["code"] == "NAVIGATION_BLOCKED", body
    blocked = SessionEvent.objects.filter(
        session_id=body["sessionId"], type="response_update", payload__data__blocked__reason="own_service"
    )
    assert blocked.exists()


def test_a_session_proxy_on_the_products_redis_is_refused_at_the_edge(api: Api) -> None:
    redis_port = urlsplit(os.environ["REDIS_URL"]).port or 6379
    for host in ("127.0.0.1", "localhost"):
        response = api.post(
            "/start/start-session", {"proxy": {"source": "custom", "type": "http", "host": host, "port": redis_port}}
        )
        assert response.status_code == 400, response.text
        assert response.json()["details"]["parameter"] == "proxy.host"
        assert "own_service" in response.json()["message"]


def test_a_socks_proxy_with_credentials_is_accepted(api: Api) -> None:
    response = api.post(
        "/start/start-session",
        {"proxy": {"source": "custom", "type": "socks", "host": "127.0.0.1", "port": "1080",
                   "username": "u", "password": "p"}},
    )  # fmt: skip
    assert response.status_code == 200, response.text
