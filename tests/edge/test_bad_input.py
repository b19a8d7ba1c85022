"""Hostile input at the API edge (issue 13 item 8): every answer is a 4xx JSON envelope naming
what was wrong, never a 500, and nothing is stored or started from input no endpoint can use."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import requests
import socketio

from tests.conftest import Api
from tests.helpers import start

DEEP = "[" * 50_000 + "]" * 50_000


def post_raw(server: str, account: dict[str, Any], path: str, body: str | bytes) -> requests.Response:
    headers = {**account["headers"], "Content-Type": "application/json"}
    return requests.post(
        server + path, data=body if isinstance(body, bytes) else body.encode(), headers=headers, timeout=30
    )


def envelope(response: requests.Response, status: int, code: str, parameter: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False and body["code"] == code, body
    assert body["message"] == body["error"] and body["message"]
    if parameter is not None:
        assert body["details"]["parameter"] == parameter, body
    return body


def test_a_lone_surrogate_in_starting_url_is_a_400_and_starts_nothing(api: Api, account: dict[str, Any]) -> None:
    from sessions_app.models import BrowserSession

    response = post_raw(
        api.base,
        account,
        "/start/start-session",
        '{"task": {"prompt": "extract the title", "startingUrl": "https://\\ud800"}}',
    )

    envelope(response, 400, "INVALID_PARAMETER", "task.startingUrl")
    assert not BrowserSession.objects.filter(team=account["team"]).exists()


@pytest.mark.parametrize(
    ("path", "body", "status", "code", "parameter"),
    [
        ("/start/run-task", '{"taskDetails": "extract \\udc00 the title"}', 400, "INVALID_PARAMETER", "taskDetails"),
        ("/start/start-session", '{"\\udc00x": 1}', 400, "INVALID_PARAMETER", "\\udc00x"),
        ("/environments", '{"name": "shop \\ud83d"}', 400, "INVALID_PARAMETER", "name"),
        (
            "/start/send-message",
            '{"sessionId": "s", "message": {"actionType": "state", "newState": "\\ud800"}}',
            400,
            "INVALID_PARAMETER",
            "message.newState",
        ),
        ("/start/start-session", DEEP, 400, "INVALID_JSON", None),
        ("/policies", '{"name": ' + "[" * 1000 + "]" * 1000 + "}", 400, "INVALID_JSON", None),
        (
            "/start/start-session",
            '{"task": {"prompt": "x", "maxDuration": 1e400}}',
            400,
            "INVALID_PARAMETER",
            "task.maxDuration",
        ),
        ("/start/run-task", '{"taskDetails": "x", "maxDuration": NaN}', 400, "INVALID_PARAMETER", "maxDuration"),
        ("/start/run-task", b'{"taskDetails": "\xff\xfe"}', 400, "INVALID_JSON", None),
        (
            "/start/start-session",
            '{"task": {"prompt": "x", "startingUrl": "http://[::1"}}',
            400,
            "INVALID_PARAMETER",
            "task.startingUrl",
        ),
        (
            "/start/start-session",
            '{"startingUrl": "http://example.com:99999"}',
            400,
            "INVALID_PARAMETER",
            "startingUrl",
        ),
        ("/start/start-session", '{"avoidDomains": ["[::1"]}', 400, "INVALID_PARAMETER", "avoidDomains[0]"),
        (
            "/start/run-task",
            '{"taskDetails": "x", "webhook": {"url": "http://[::1"}}',
            400,
            "INVALID_PARAMETER",
            "webhook.url",
        ),
    ],
)
def test_json_no_endpoint_can_use_is_a_400_naming_the_field(
    server: str,
    account: dict[str, Any],
    path: str,
    body: str | bytes,
    status: int,
    code: str,
    parameter: str | None,
) -> None:
    envelope(post_raw(server, account, path, body), status, code, parameter)


@pytest.mark.parametrize("path", ["/start/start-session", "/environments", "/v1/chat/completions"])
def test_a_body_over_the_limit_is_a_413(server: str, account: dict[str, Any], path: str) -> None:
    body = '{"name": "' + "x" * 3_000_000 + '"}'

    response = post_raw(server, account, path, body)

    assert response.status_code == 413, response.text
    if path.startswith("/v1/"):
        assert response.json()["error"]["code"] == "payload_too_large"
    else:
        envelope(response, 413, "PAYLOAD_TOO_LARGE")


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("/sessions?page=1e20", "page"),
        ("/sessions?page=100000000000000000000", "page"),
        ("/sessions?limit=-0", "limit"),
        ("/sessions/nope/events?after=100000000000000000000", None),
        ("/sessions?state=%00", "state"),
        ("/sessions/%00", None),
        ("/account/usage?from=9999-12-31&to=9999-12-31", "from"),
        ("/account/usage?from=2026-01-01&to=9999-12-31", "to"),
    ],
)
def test_query_parameters_out_of_range_are_a_4xx(
    server: str, account: dict[str, Any], query: str, parameter: str | None
) -> None:
    response = requests.get(server + query, headers=account["headers"], timeout=10)

    assert 400 <= response.status_code < 500, response.text
    body = response.json()
    assert body["success"] is False and body["code"]
    if parameter is not None:
        assert body["details"]["parameter"] == parameter, body


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (
            '{"model": "enigma-browser-1", "messages": [{"role": "user", "content": "go \\ud800"}]}',
            "messages[0].content",
        ),
        ('{"model": "enigma-browser-1", "messages": ' + "[" * 5000 + "]" * 5000 + "}", None),
        (
            '{"model": "enigma-browser-1", "messages": [{"role": "user", "content": "x"}], "max_tokens": 1e400}',
            "max_tokens",
        ),
    ],
)
def test_chat_completions_rejects_hostile_json_in_openai_format(
    server: str, account: dict[str, Any], body: str, param: str | None
) -> None:
    response = post_raw(server, account, "/v1/chat/completions", body)

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param


def test_a_socket_message_with_a_lone_surrogate_is_refused_naming_the_field(api: Api, account: dict[str, Any]) -> None:
    from sessions_app.models import Task

    session_id = start(api)["sessionId"]
    api.wait_session(session_id, "active")

    async def emit() -> Any:
        client = socketio.AsyncClient(reconnection=False)
        await client.connect(
            api.base, auth={"sessionId": session_id, "apiKey": account["key"]}, transports=["websocket"]
        )
        try:
            return await client.call("message", {"actionType": "newTask", "taskDetails": "go \ud800"}, timeout=10)
        finally:
            await client.disconnect()

    ack = asyncio.run(emit())

    assert (ack["code"], ack["details"]["parameter"]) == ("INVALID_PARAMETER", "message.taskDetails"), ack
    assert not Task.objects.filter(session_id=session_id).exists()
    assert api.get(f"/sessions/{session_id}").json()["state"] == "active"


def test_a_socket_message_sent_as_deeply_nested_json_text_is_an_invalid_json_error(
    api: Api, account: dict[str, Any]
) -> None:
    session_id = start(api)["sessionId"]
    api.wait_session(session_id, "active")
    nested = "[" * 50_000 + "]" * 50_000

    async def emit() -> Any:
        client = socketio.AsyncClient(reconnection=False)
        await client.connect(
            api.base, auth={"sessionId": session_id, "apiKey": account["key"]}, transports=["websocket"]
        )
        try:
            return await client.call("message", nested, timeout=10)
        finally:
            await client.disconnect()

    ack = asyncio.run(emit())

    assert ack["code"] == "INVALID_JSON", ack
    assert api.get(f"/sessions/{session_id}").json()["state"] == "active"
