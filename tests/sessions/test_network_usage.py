"""A session's usage counts the bytes its browser moved through the egress gate."""

from __future__ import annotations

import time
from typing import Any

from tests.conftest import Api


def test_session_usage_counts_bytes_through_the_gate(api: Api, pages: str) -> None:
    body = api.post("/start/run-task", {"taskDetails": f"go to {pages}/hello.html then extract the title"}).json()
    assert body["status"] == "complete", body
    session_id = body["sessionId"]
    deadline = time.time() + 20
    usage: dict[str, Any] = {}
    while time.time() < deadline:
        detail = api.get(f"/sessions/{session_id}").json()
        usage = detail["usage"]
        if detail["state"] != "active" and usage["networkBytesReceived"] > 0:
            break
        time.sleep(0.2)
    page_size = len(api.http.get(f"{pages}/hello.html").content)
    assert usage["networkBytesReceived"] >= page_size, usage
    assert usage["networkBytesSent"] > 0, usage
