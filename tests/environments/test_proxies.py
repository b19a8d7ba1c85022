"""Custom proxies: the browser's traffic goes through them with credentials never echoed."""

from __future__ import annotations

import base64
import http.server
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Api
from tests.environments.helpers import new_task, start


class ForwardProxy:
    """An http proxy that requires Basic credentials and answers every request itself."""

    def __init__(self, user: str, password: str) -> None:
        expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.seen: list[str] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                if self.headers.get("Proxy-Authorization") != expected:
                    self.send_response(407)
                    self.send_header("Proxy-Authenticate", 'Basic realm="test"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                proxy.seen.append(self.path)
                body = b"<html><head><title>Via the test proxy</title></head><body>proxied</body></html>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def forward_proxy() -> Iterator[ForwardProxy]:
    instance = ForwardProxy("proxy-user", "proxy-pass-9")
    yield instance
    instance.httpd.shutdown()


def test_custom_http_proxy_with_credentials_carries_the_traffic(api: Api, forward_proxy: ForwardProxy) -> None:
    proxy = {
        "source": "custom",
        "type": "http",
        "host": "127.0.0.1",
        "port": str(forward_proxy.port),
        "username": "proxy-user",
        "password": "proxy-pass-9",
    }
    session = start(api, proxy=proxy)
    # The name resolves nowhere but through the proxy.
    done = new_task(api, session["sessionId"], "go to http://shop.enigma-proxy.test/item then extract the title")
    assert done["type"] == "task_completed", done
    assert "Via the test proxy" in done["data"]["message"]
    assert forward_proxy.seen and forward_proxy.seen[0] == "http://shop.enigma-proxy.test/item"
    detail = api.get(f"/sessions/{session['sessionId']}").json()
    assert detail["config"]["proxy"]["host"] == "127.0.0.1"
    assert "proxy-pass-9" not in str(detail) and "proxy-user" not in str(detail)


@pytest.mark.parametrize(
    ("proxy", "parameter", "code"),
    [
        ({"source": "WebRun", "country": "US"}, "proxy.source", "PROXY_UNAVAILABLE"),
        ({"source": "custom", "type": "ftp", "host": "p.example.com", "port": "21"}, "proxy.type", "INVALID_PARAMETER"),
        (
            {"source": "custom", "type": "http", "host": "p.example.com", "port": "99999"},
            "proxy.port",
            "INVALID_PARAMETER",
        ),
        ({"source": "custom", "type": "http", "host": "10.1.2.3", "port": "8080"}, "proxy.host", "INVALID_PARAMETER"),
        (
            {"source": "custom", "type": "http", "host": "127.0.0.1", "port": "8080", "colour": "red"},
            "proxy.colour",
            "INVALID_PARAMETER",
        ),
    ],
)
def test_invalid_or_unavailable_proxies_are_clear_400s(
    api: Api, proxy: dict[str, Any], parameter: str, code: str
) -> None:
    response = api.post("/start/start-session", {"proxy": proxy})
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == code and body["details"]["parameter"] == parameter


def test_an_ipv6_proxy_host_is_bracketed_for_the_gate() -> None:
    from agents.egress.gate import Upstream
    from environments.proxies import proxy_parse

    _, browser = proxy_parse({"source": "custom", "type": "http", "host": "2606:4700:4700::1111", "port": "8080"},
                             resolve=False)  # fmt: skip
    assert browser["server"] == "http://[2606:4700:4700::1111]:8080"
    upstream = Upstream.from_playwright(browser)
    assert (upstream.host, upstream.port) == ("2606:4700:4700::1111", 8080)
