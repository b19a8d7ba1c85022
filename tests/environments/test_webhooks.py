"""Webhooks: signed, retried after a failure, listed per task; replays are detectable."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Api
from tests.environments.helpers import new_task, start
from webhooks.signing import verify


class Receiver:
    """A local endpoint that answers the given status codes in turn (then 200)."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = list(statuses)
        self.requests: list[dict[str, Any]] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append({"headers": dict(self.headers), "body": body})
                self.send_response(receiver.statuses.pop(0) if receiver.statuses else 200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def wait(self, count: int, timeout: float = 20) -> None:
        deadline = time.time() + timeout
        while len(self.requests) < count and time.time() < deadline:
            time.sleep(0.05)
        assert len(self.requests) >= count, self.requests


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    instance = Receiver([500])
    yield instance
    instance.httpd.shutdown()


def test_webhook_is_signed_retried_after_a_500_and_listed(api: Api, pages: str, receiver: Receiver) -> None:
    secret = api.get("/webhooks/secret").json()["secret"]
    session = start(api)
    done = new_task(
        api,
        session["sessionId"],
        f"go to {pages}/hello.html then extract the title",
        webhook={"name": "ci", "url": receiver.url, "auth": "Bearer token123", "submittedData": "full_response"},
    )
    assert done["type"] == "task_completed"
    receiver.wait(2)
    first, second = receiver.requests[:2]
    assert first["headers"]["Enigma-Delivery"] == second["headers"]["Enigma-Delivery"]
    body = second["body"]
    payload = json.loads(body)
    assert payload["type"] == "task_completed" and payload["taskId"] == done["taskId"]
    assert payload["data"]["message"] == done["data"]["message"]
    assert set(payload["usage"]) == {"inputTokens", "outputTokens", "computeTime", "cost"}
    assert second["headers"]["Authorization"] == "Bearer token123"
    header = second["headers"]["Enigma-Signature"]
    assert verify(secret, header, body)
    # A replay: the same request later than the tolerance, or with another body, is refused.
    sent_at = int(header.split(",")[0].removeprefix("t="))
    assert not verify(secret, header, body, now=sent_at + 301)
    assert not verify(secret, header, body.replace(b"task_completed", b"task_failed"))
    assert not verify("whsec_other", header, body)

    deadline = time.time() + 10
    while time.time() < deadline:
        deliveries = api.get(f"/task/{session['sessionId']}/{done['taskId']}/webhooks").json()["deliveries"]
        if deliveries and deliveries[0]["status"] == "delivered":
            break
        time.sleep(0.1)
    assert len(deliveries) == 1
    delivery = deliveries[0]
    assert delivery["status"] == "delivered" and delivery["attempts"] == 2
    assert [entry["statusCode"] for entry in delivery["log"]] == [500, 200]
    assert "auth" not in delivery and "token123" not in json.dumps(delivery)
    assert "token123" not in json.dumps(api.get(f"/sessions/{session['sessionId']}").json())


def test_other_payload_kinds(api: Api, pages: str, receiver: Receiver) -> None:
    receiver.statuses.clear()
    session = start(api)
    new_task(
        api,
        session["sessionId"],
        f"go to {pages}/hello.html then extract the title",
        webhook={"url": receiver.url, "submittedData": "just_ping"},
    )
    structured = new_task(
        api,
        session["sessionId"],
        "extract the title",
        outputType="structured_json",
        outputSchema={"type": "object", "properties": {"title": {"type": "string"}}},
        webhook={"url": receiver.url, "submittedData": "ai_response"},
    )
    receiver.wait(2)
    ping = json.loads(receiver.requests[0]["body"])
    assert set(ping) == {"event", "sessionId", "taskId", "completedAt"} and ping["event"] == "task_completed"
    assert json.loads(receiver.requests[1]["body"]) == json.loads(structured["data"]["message"])


def test_webhooks_to_private_addresses_are_refused(api: Api) -> None:
    session = start(api)
    response = api.message(
        session["sessionId"],
        {"actionType": "newTask", "taskDetails": "extract the title", "webhook": {"url": "http://10.0.0.5/hook"}},
    )
    assert response.status_code == 400
    assert response.json()["details"]["parameter"] == "message.webhook.url"
