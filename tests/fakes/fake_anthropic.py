"""A local stand-in for the Anthropic Messages API, for tests that drive the real `anthropic` SDK.

It is real HTTP on 127.0.0.1 (a ThreadingHTTPServer in a thread) and speaks POST /v1/messages
with the real response shape: content blocks (text, tool_use), stop_reason and usage, or the real
error envelope (429 rate_limit_error, 529 overloaded_error ...). A test scripts the turns; each
script entry is a response dict, an error, or a callable that receives the request body and
returns one of those. Every request body is recorded, raw and parsed.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_ids = itertools.count(1)


@dataclass(frozen=True)
class FakeError:
    status: int
    type: str
    message: str


OVERLOADED = FakeError(529, "overloaded_error", "Overloaded")
RATE_LIMITED = FakeError(429, "rate_limit_error", "Number of request tokens has exceeded your rate limit")

ScriptEntry = dict[str, Any] | FakeError | Callable[[dict[str, Any]], "dict[str, Any] | FakeError"]


def text_block(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def tool_block(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"type": "tool_use", "id": f"toolu_{next(_ids):06d}", "name": name, "input": arguments}


def message(
    *blocks: dict[str, Any],
    stop_reason: str | None = None,
    input_tokens: int = 100,
    output_tokens: int = 20,
) -> dict[str, Any]:
    """Return a Messages API response body with `blocks` as its content."""
    if stop_reason is None:
        stop_reason = "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"
    return {
        "id": f"msg_{next(_ids):06d}",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": list(blocks),
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }


def tool_use(
    name: str, arguments: dict[str, Any], thought: str = "", *, input_tokens: int = 100, output_tokens: int = 20
) -> dict[str, Any]:
    """Return a turn that calls one tool, after an optional thought."""
    blocks = ([text_block(thought)] if thought else []) + [tool_block(name, arguments)]
    return message(*blocks, input_tokens=input_tokens, output_tokens=output_tokens)


def observations(body: dict[str, Any]) -> list[str]:
    """Return the page observations (text blocks) in a recorded request, oldest first."""
    found = []
    for msg in body.get("messages", []):
        content = msg.get("content")
        if isinstance(content, list):
            found += [b["text"] for b in content if b.get("type") == "text" and b["text"].startswith("Current page:")]
    return found


def find_ref(body: dict[str, Any], pattern: str) -> str:
    """Return the ref of the first element line in the latest observation matching `pattern`."""
    for line in observations(body)[-1].splitlines():
        match = re.match(r"\s*\[(e\d+)\] (.*)", line)
        if match and re.search(pattern, match.group(2), re.IGNORECASE):
            return match.group(1)
    raise AssertionError(f"no element matching {pattern!r} in the observation")


def tool_results(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the tool_result blocks of the last user message of a recorded request."""
    last = body["messages"][-1]["content"]
    return [b for b in last if isinstance(b, dict) and b.get("type") == "tool_result"]


class FakeAnthropic:
    """The fake server. Use `start()`/`stop()` or a `with` block; `base_url` for the SDK."""

    def __init__(self) -> None:
        self.script: deque[ScriptEntry] = deque()
        self.requests: list[dict[str, Any]] = []
        self.raw_requests: list[bytes] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        assert isinstance(host, str)
        return f"http://{host}:{port}"

    def add(self, *entries: ScriptEntry) -> None:
        self.script.extend(entries)

    def reset(self) -> None:
        with self._lock:
            self.script.clear()
            self.requests.clear()
            self.raw_requests.clear()

    def start(self) -> FakeAnthropic:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeAnthropic:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _next(self, body: dict[str, Any]) -> dict[str, Any] | FakeError:
        with self._lock:
            if not self.script:
                return FakeError(400, "invalid_request_error", "fake_anthropic: the test script is exhausted")
            entry = self.script.popleft()
        return entry(body) if callable(entry) else entry

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.path.split("?")[0] != "/v1/messages":
                    self._send(404, _error_body(FakeError(404, "not_found_error", "Not found")))
                    return
                body = json.loads(raw)
                with fake._lock:
                    fake.raw_requests.append(raw)
                    fake.requests.append(body)
                reply = fake._next(body)
                if isinstance(reply, FakeError):
                    self._send(reply.status, _error_body(reply))
                else:
                    self._send(200, reply)

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.send_header("request-id", f"req_{next(_ids):06d}")
                self.end_headers()
                self.wfile.write(data)

        return Handler


def _error_body(error: FakeError) -> dict[str, Any]:
    return {
        "type": "error",
        "error": {"type": error.type, "message": error.message},
        "request_id": f"req_{next(_ids):06d}",
    }
