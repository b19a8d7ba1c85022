"""Fuzz every endpoint of the URLconf (the list /openapi.json serves) over HTTP with hostile input:
JSON bodies built from the contract's field names with hostile values (lone surrogates, NUL,
huge and non-finite numbers, broken URLs and dates, deep nesting, bytes that are not UTF-8),
hostile query strings and path segments. No answer may be a 5xx, and every 4xx on an API path
is the error envelope (OpenAI's format under /v1/).

The server is a Daphne of its own with rate limits out of the way; the key's team has no
balance, so bodies that pass validation stop at 402 before any browser work."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Proc, _child_env, free_port

FIELD_NAMES = sorted(
    {
        # sessions and tasks (all three generations), send-message, interactions
        "taskDetails",
        "prompt",
        "startingUrl",
        "startingPoint",
        "maxDuration",
        "maxInputTokens",
        "maxOutputTokens",
        "avoidDomains",
        "terminateOnCompletion",
        "outputType",
        "outputSchema",
        "secrets",
        "files",
        "webhook",
        "mode",
        "environmentId",
        "profileId",
        "policyId",
        "proxy",
        "reachOutMode",
        "task",
        "initialTask",
        "sessionId",
        "message",
        "actionType",
        "newState",
        "action",
        "type",
        "x",
        "y",
        "text",
        "key",
        "humanLike",
        "match",
        "fields",
        "url",
        "auth",
        "submittedData",
        "name",
        "description",
        # proxies, policies, triggers
        "source",
        "host",
        "port",
        "username",
        "password",
        "level",
        "country",
        "llmRole",
        "status",
        "defaultAction",
        "domainRules",
        "actionRules",
        "entries",
        "pattern",
        "category",
        "scope",
        "matchType",
        "urlPattern",
        "scheduleType",
        "scheduleAt",
        "scheduleInterval",
        "scheduleCron",
        "timezone",
        "deliveryMode",
        "maxConsecutiveFailures",
        # OpenAI chat completions
        "model",
        "messages",
        "role",
        "content",
        "stream",
        "stream_options",
        "include_usage",
        "max_tokens",
        "max_completion_tokens",
        "n",
        "response_format",
        "reach_out_mode",
        "temperature",
        "tools",
    }
)
HOSTILE_STRINGS = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\ud800",
    "\udfff",
    "x\ud83d",
    "https://\ud800",
    "http://[::1",
    "http://[::1]:99999",
    "http://a:99999",
    "http://a:0",
    "http://:80",
    "https://",
    "//",
    "javascript:alert(1)",
    "file:///etc/passwd",
    "chrome://settings",
    "data:text/html,x",
    "http://127.0.0.1:6379",
    "2024-02-30",
    "2024-02-30T09:00:00Z",
    "9999-12-31",
    "9999-12-31T23:59:59-12:00",
    "0001-01-01T00:00:00+14:00",
    "99999999999999999999d",
    "0s",
    "0 0 30 2 *",
    "* * * * * * *",
    "60 25 * * *",
    "1e400",
    "NaN",
    "-1",
    "%00",
    "../../etc/passwd",
    "(a+)+$",
    "[",
    "Europe/Nowhere",
    "x" * 5000,
    "terminate",
    "pause",
    "resume",
    "stop",
    "newTask",
    "state",
    "interaction",
    "guardrail",
    "CLICK",
    "DOUBLE_CLICK",
    "TYPE",
    "KEY_PRESS",
    "takeOverControl",
    "structured_json",
    "structured_csv",
    "text",
    "user",
    "system",
    "assistant",
    "enigma-browser-1",
    "at",
    "every",
    "cron",
    "allowlist",
    "blocklist",
    "block",
    "guardrail",
    "allow",
    "regex",
    "navigation",
    "click",
    "socks5",
    "http",
    "custom",
    "WebRun",
    "full",
    "off",
    "Enter",
    "\u202e",
    "\ufeff",
    "😀",
]
HOSTILE_NUMBERS = [
    "1e400",
    "-1e400",
    "1" + "0" * 5000,
    "NaN",
    "Infinity",
    "-Infinity",
    "-0",
    "1.5e308",
    "123456789012345678901234567890",
    "9223372036854775808",
    "-9223372036854775809",
    "1e-400",
]
QUERY_NAMES = ["page", "limit", "after", "state", "from", "to", "group", "token", "apiKey", "format", "x"]
QUERY_VALUES = [
    "1e20",
    "100000000000000000000",
    "-1",
    "0",
    "1",
    "9999-12-31",
    "0001-01-01",
    "%00",
    "\x00",
    "\ud800",
    "NaN",
    "active",
    "day",
    "key",
    "session",
    " 1",
    "1 ",
    "+5",
    "0x10",
    "٣",
]
SEGMENTS = ["nope", "%00", "%ED%A0%80", "%FF", "%2E%2E", "%2F", "a" * 300, "%F0%9F%98%80", "1e400", "-1"]
CONTENT_TYPES = ["application/json"] * 8 + [
    "application/x-www-form-urlencoded",
    "text/plain",
    "multipart/form-data; boundary=x",
    "application/json; charset=latin-1",
]
EXAMPLES = int(os.environ.get("ENIGMA_FUZZ_EXAMPLES", "1200"))


def _text() -> st.SearchStrategy[str]:
    # Hypothesis' text leaves out surrogates; put them back in.
    chars = st.characters(codec=None) | st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
    return st.text(chars, max_size=12)


LEAVES = st.sampled_from(HOSTILE_STRINGS) | _text() | st.integers() | st.floats() | st.booleans() | st.none()
NAMES = st.sampled_from(FIELD_NAMES) | _text()
JSON_VALUES = st.recursive(
    LEAVES, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(NAMES, inner, max_size=5), max_leaves=25
)


def _dumps(value: Any) -> bytes:
    # ensure_ascii writes lone surrogates as \\udXXX escapes, as a hostile client would.
    return json.dumps(value, allow_nan=True).encode()


def _with_raw_number(value: dict[str, Any], name: str, number: str, nested: bool) -> bytes:
    text = json.dumps({**value, name: "@@"}, allow_nan=True).replace('"@@"', number)
    return f'{{"task": {text}}}'.encode() if nested else text.encode()


BODIES = st.one_of(
    st.dictionaries(NAMES, JSON_VALUES, max_size=8).map(_dumps),
    JSON_VALUES.map(_dumps),
    st.builds(
        _with_raw_number,
        st.dictionaries(NAMES, LEAVES, max_size=4),
        st.sampled_from(FIELD_NAMES),
        st.sampled_from(HOSTILE_NUMBERS),
        st.booleans(),
    ),
    st.builds(
        lambda n, key: (f'{{"{key}": ' + "[" * n + "]" * n + "}").encode(),
        st.sampled_from([65, 1000, 50_000]),
        st.sampled_from(FIELD_NAMES),
    ),
    st.binary(max_size=64),
    st.builds(
        lambda value, cut: _dumps(value)[:cut],
        st.dictionaries(NAMES, JSON_VALUES, min_size=1, max_size=4),
        st.integers(1, 40),
    ),
    st.just(b""),
)


def _query_value() -> st.SearchStrategy[str]:
    return st.sampled_from(QUERY_VALUES) | _text()


def _quote(text: str) -> str:
    return quote(text, safe="", errors="surrogatepass")


QUERIES = st.dictionaries(st.sampled_from(QUERY_NAMES) | _text(), _query_value(), max_size=4).map(
    lambda q: "&".join(f"{_quote(k)}={_quote(v)}" for k, v in q.items())
)


@pytest.fixture(scope="module")
def fuzz_server(django_db_setup: Any, proc_logs: Path) -> Iterator[str]:
    """A Daphne of its own whose rate limits no fuzz run reaches."""
    port = free_port()
    env = {
        **_child_env(),
        "ENIGMA_RATE_LIMITS": ",".join(
            f"{scope}=1000000"
            for scope in ("start-session", "send-message", "run-task", "chat-completions", "files-upload")
        ),
    }
    daphne = str(Path(sys.executable).with_name("daphne"))
    proc = Proc(
        [daphne, "-b", "127.0.0.1", "-p", str(port), "enigma_site.asgi:application"], env, proc_logs / "daphne-fuzz.log"
    ).start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            requests.get(base + "/openapi.json", timeout=5)
            break
        except (requests.ConnectionError, requests.Timeout):
            time.sleep(0.1)
    yield base
    proc.stop()


@pytest.fixture
def targets(fuzz_server: str, broke_account: dict[str, Any]) -> dict[str, list[str]]:
    """Real ids of the key's team for each path parameter, and the hostile segments."""
    from sessions_app.models import BrowserSession, Task

    headers = broke_account["headers"]
    team = broke_account["team"]
    # Active, with no worker and no heartbeat: no sweep touches it, and messages reach their parser.
    session = BrowserSession.objects.create(team=team, state=BrowserSession.State.ACTIVE, config={})
    task = Task.objects.create(session=session, seq=1, prompt="extract the title", config={})
    environment = requests.post(
        fuzz_server + "/environments", json={"name": "fuzz"}, headers=headers, timeout=10
    ).json()["environment"]["_id"]
    policy = requests.post(fuzz_server + "/policies", json={"name": "fuzz"}, headers=headers, timeout=10).json()[
        "policy"
    ]["_id"]
    return {
        "session_id": [session.pk],
        "task_id": [task.pk],
        "environment_id": [environment],
        "policy_id": [policy],
        "_session": [session.pk],
    }


def _operations(base: str) -> list[tuple[str, str]]:
    document = requests.get(base + "/openapi.json", timeout=10).json()
    return [(path, method) for path, item in document["paths"].items() for method in item]


def _problem(path: str, content_type: str, response: requests.Response) -> str | None:
    """What is wrong with an answer, or None."""
    from enigma_site.errors import is_api_path

    status = response.status_code
    if status >= 500 and not (path == "/start/health" and status == 503):
        return f"{status}: {response.text[:200]}"
    if not 400 <= status < 500 or not is_api_path(path) or path.startswith("/mcp"):
        return None  # the MCP SDK answers bad requests in its own (JSON-RPC or plain) format
    if content_type.startswith("multipart/") and status == 400 and not response.content:
        return None  # Twisted (under Daphne) parses multipart bodies itself and drops bad ones
    try:
        body = response.json()
    except ValueError:
        return f"{status} is not JSON: {response.text[:200]}"
    if path.startswith("/v1/"):
        error = body.get("error") if isinstance(body, dict) else None
        return None if isinstance(error, dict) and error.get("code") and error.get("type") else f"{status}: {body}"
    ok = (
        isinstance(body, dict)
        and body.get("success") is False
        and body.get("code")
        and (body.get("message") == body.get("error"))
    )
    return None if ok else f"{status} is not the envelope: {body}"


class Fuzzer:
    def __init__(self, base: str, key: str, ids: dict[str, list[str]]) -> None:
        self.base, self.key, self.ids = base, key, ids
        self.http = requests.Session()
        self.tried = 0
        self.server_errors = 0
        self.failures: list[str] = []

    def send(
        self,
        method: str,
        path: str,
        *,
        query: str = "",
        body: bytes = b"",
        content_type: str = "application/json",
        auth: bool = True,
    ) -> None:
        headers = {"Content-Type": content_type}
        if auth:
            headers["Authorization"] = f"Bearer {self.key}"
        url = self.base + path + (f"?{query}" if query else "")
        response = self.http.request(method.upper(), url, data=body or None, headers=headers, timeout=60)
        self.tried += 1
        self.server_errors += response.status_code >= 500 and path != "/start/health"
        problem = _problem(path, content_type, response)
        if problem:
            self.failures.append(
                f"{method.upper()} {url[len(self.base) :][:200]} ({content_type}) body={body[:200]!r}: {problem}"
            )

    def fill(self, template: str, draw: Any = None) -> str:
        def one(match: re.Match[str]) -> str:
            real = self.ids.get(match.group(1), [])
            if draw is None:
                return real[0] if real else "nope"
            return draw(st.sampled_from(real + SEGMENTS) if real else st.sampled_from(SEGMENTS))

        return re.sub(r"{(\w+)}", one, template)


@pytest.mark.slow
def test_no_hostile_input_gets_a_5xx_from_any_endpoint(
    fuzz_server: str, broke_account: dict[str, Any], targets: dict[str, list[str]]
) -> None:
    from sessions_app.models import BrowserSession

    operations = _operations(fuzz_server) + [("/mcp", "post")]
    assert len(operations) > 30
    fuzzer = Fuzzer(fuzz_server, broke_account["key"], targets)
    deep = b'{"task": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    big = b'{"name": "' + b"x" * 3_000_000 + b'"}'
    # Every operation gets the fixed battery once...
    for path, method in operations:
        real = fuzzer.fill(path)
        for body in (
            deep,
            big,
            b'{"name": "\\ud800", "prompt": "\\udc00"}',
            b'{"maxDuration": 1e400}',
            b'{"\\udfff": 1}',
            b"\xff\xfe",
            b'{"startingUrl": "http://[::1"}',
        ):
            fuzzer.send(method, real, body=body)
        fuzzer.send(method, real, query="page=1e20&limit=100000000000000000000&after=1e400&state=%00")
        fuzzer.send(method, real, query="from=9999-12-31&to=9999-12-31")

    # ...then random requests.
    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(
        operation=st.sampled_from(operations),
        query=QUERIES,
        body=BODIES,
        data=st.data(),
        content_type=st.sampled_from(CONTENT_TYPES),
        auth=st.sampled_from([True] * 9 + [False]),
    )
    def fuzz(
        operation: tuple[str, str], query: str, body: bytes, data: st.DataObject, content_type: str, auth: bool
    ) -> None:
        path, method = operation
        if path == "/start/send-message" and data.draw(st.booleans()):
            # Wrap a drawn message in the real session, so the message parser is reached.
            message = data.draw(st.dictionaries(NAMES, JSON_VALUES, max_size=6))
            body = _dumps({"sessionId": targets["_session"][0], "message": message})
            BrowserSession.objects.filter(pk=targets["_session"][0]).update(state=BrowserSession.State.ACTIVE)
        fuzzer.send(method, fuzzer.fill(path, data.draw), query=query, body=body, content_type=content_type, auth=auth)

    fuzz()
    print(
        f"\nfuzz: {fuzzer.tried} hostile requests to {len(operations)} operations, {fuzzer.server_errors} answered 5xx"
    )
    assert not fuzzer.failures, "\n".join(fuzzer.failures[:30])
