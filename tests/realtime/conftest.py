"""Helpers for the realtime tests: live sessions and the node Socket.IO client."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

JS_DIR = Path(__file__).resolve().parent.parent / "js"


def session_start(api: Any, **body: Any) -> str:
    """Start a session (no task) and return its id once a worker holds it."""
    response = api.post("/start/start-session", body)
    assert response.status_code == 200, response.text
    session_id = response.json()["sessionId"]
    api.wait_session(session_id, "active")
    return session_id


def view_token(view_url: str) -> str:
    """The viewer token of a `webViewURL` (/view/<token>)."""
    return urlsplit(view_url).path.rsplit("/", 1)[-1]


def viewer_ws_url(base: str, token: str) -> str:
    return base.replace("http://", "ws://") + f"/ws/view/{token}/"


def task_details(pages: str, page: str = "hello.html") -> str:
    return f"go to {pages}/{page} then extract the headings"


@pytest.fixture
def node_client() -> Any:
    """Run tests/js/client.mjs with a config; return its JSON outcome."""
    node = shutil.which("node")
    if node is None or not (JS_DIR / "node_modules" / "socket.io-client").exists():
        message = "node and tests/js/node_modules (installed by scripts/install.sh) are needed"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)

    def run(config: dict[str, Any], timeout: float = 45) -> dict[str, Any]:
        done = subprocess.run(
            [node, "client.mjs", json.dumps(config)],
            cwd=JS_DIR,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])

    return run
