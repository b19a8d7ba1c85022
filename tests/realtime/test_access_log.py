"""No API key, viewer token or session id in Daphne's access log (issue 13 item 2)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from websockets.asyncio.client import connect

from .conftest import view_token, viewer_ws_url

pytestmark = pytest.mark.slow


@pytest.mark.asyncio
async def test_access_log_never_shows_keys_tokens_or_session_ids(api: Any, proc_logs: Path) -> None:
    body = (await asyncio.to_thread(api.post, "/start/start-session", {})).json()
    session_id, view_url = body["sessionId"], body["streaming"]["webViewURL"]
    await asyncio.to_thread(api.wait_session, session_id, "active")
    token = view_token(view_url)
    marker = f"logcheck{time.time_ns()}"
    urls = [
        f"{api.base}/mcp/{api.key}?m={marker}",
        f"{api.base}/start/health?apiKey={api.key}&m={marker}",
        f"{api.base}/sessions/{session_id}?token={token}&m={marker}",
        f"{api.base}/task/{session_id}/{'0' * 32}?m={marker}",
        f"{view_url}?m={marker}",
    ]
    for url in urls:
        # POST to /mcp (a GET opens its event stream); every answer is logged when it completes.
        send = requests.post if "/mcp/" in url else requests.get
        await asyncio.to_thread(send, url, json={}, timeout=10)
    async with connect(viewer_ws_url(api.base, token) + f"?m={marker}"):
        pass
    log = proc_logs / "daphne.log"
    deadline = time.monotonic() + 10
    while True:
        text = log.read_text(errors="replace")
        access = [line for line in text.splitlines() if marker in line]
        if (len(access) >= len(urls) and "/ws/view/[redacted]" in text) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert len(access) >= len(urls), access  # every request is logged...
    joined = "\n".join(access)
    assert "POST /mcp/[redacted]" in joined and "apiKey=[redacted]" in joined, joined
    assert "token=[redacted]" in joined and "/view/[redacted]" in joined, joined
    # ...and so are 4xx responses (django.request), all without what would let a reader in.
    logged = access + [line for line in text.splitlines() if "django.request" in line or "WS" in line]
    for secret in (api.key, token, session_id):
        assert not [line for line in logged if secret in line]
