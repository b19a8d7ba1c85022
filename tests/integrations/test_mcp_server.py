"""The MCP server through the official `mcp` client over Streamable HTTP, against the live server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import requests
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.types import CallToolResult, TextContent

TOOLS = {
    "browser_task",
    "create_session",
    "send_task_to_session",
    "get_task_status",
    "control_session",
    "take_over_session",
}


def with_client(url: str, scenario: Callable[[Client], Awaitable[Any]], headers: dict[str, str] | None = None) -> Any:
    async def run() -> Any:
        transport = streamable_http_client(url, http_client=create_mcp_http_client(headers=headers))
        async with Client(transport) as client:
            return await scenario(client)

    return asyncio.run(run())


def _text(result: CallToolResult) -> str:
    """The text of the result's first content block (Enigma answers with one JSON text block)."""
    content = result.content[0]
    assert isinstance(content, TextContent), content
    return content.text


async def call(client: Client, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    body = json.loads(_text(result))
    assert result.is_error == (not body["success"]), body
    return body


def test_mcp_lists_the_six_tools_with_a_bearer_key(api: Any, account: dict[str, Any]) -> None:
    async def scenario(client: Client) -> set[str]:
        return {tool.name for tool in (await client.list_tools()).tools}

    assert with_client(f"{api.base}/mcp", scenario, headers=account["headers"]) == TOOLS


def test_mcp_browser_task_returns_the_result(api: Any, account: dict[str, Any], pages: str) -> None:
    from sessions_app.models import BrowserSession

    async def scenario(client: Client) -> dict[str, Any]:
        return await call(
            client, "browser_task", {"prompt": "extract the headings", "startingUrl": f"{pages}/hello.html"}
        )

    body = with_client(f"{api.base}/mcp/{account['key']}", scenario)

    assert body["status"] == "completed"
    assert "Hello heading" in body["result"]
    assert {"prompt_tokens", "completion_tokens", "total_tokens", "cost"} <= set(body["usage"])
    session = BrowserSession.objects.get(pk=body["sessionId"], team=account["team"])
    api.wait_session(session.pk, "completed")


def test_mcp_session_tools_send_a_task_then_terminate(api: Any, account: dict[str, Any], pages: str) -> None:
    async def scenario(client: Client) -> list[dict[str, Any]]:
        created = await call(client, "create_session", {"startingUrl": f"{pages}/hello.html"})
        sent = await call(
            client, "send_task_to_session", {"sessionId": created["sessionId"], "prompt": "extract the title"}
        )
        status = await call(client, "get_task_status", {"sessionId": created["sessionId"], "taskId": sent["taskId"]})
        control = await call(client, "control_session", {"sessionId": created["sessionId"], "action": "terminate"})
        return [created, sent, status, control]

    created, sent, status, control = with_client(f"{api.base}/mcp/{account['key']}", scenario)

    assert created["message"].startswith("Session created successfully")
    assert "/view/" in created["streamingUrl"]
    assert sent["sessionId"] == created["sessionId"] and "Hello page" in sent["result"]
    assert status["status"] == "completed" and status["type"] == "task_completed"
    assert control == {"success": True, "message": "Session control command sent successfully", "action": "terminate"}
    api.wait_session(created["sessionId"], "terminated")


def test_mcp_tool_errors_are_the_rest_error_bodies(api: Any, account: dict[str, Any]) -> None:
    async def scenario(client: Client) -> list[Any]:
        return [
            await client.call_tool("get_task_status", {"sessionId": "nope", "taskId": "nope"}),
            await client.call_tool("browser_task", {"startingUrl": "https://example.com"}),
        ]

    missing, invalid = with_client(f"{api.base}/mcp", scenario, headers=account["headers"])

    assert missing.is_error and json.loads(missing.content[0].text)["code"] == "SESSION_NOT_FOUND"
    assert invalid.is_error and json.loads(invalid.content[0].text)["code"] == "MISSING_REQUIRED_FIELD"


def test_mcp_without_a_valid_key_is_401(server: str, transactional_db: Any) -> None:
    no_headers: dict[str, str] = {}
    for url, headers in ((f"{server}/mcp", no_headers), (f"{server}/mcp/enig_wrong", no_headers)):
        response = requests.post(
            url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, headers=headers, timeout=10
        )
        assert response.status_code == 401
        assert response.json()["success"] is False


def test_mcp_checks_the_host_header(server: str, account: dict[str, Any]) -> None:
    response = requests.post(
        f"{server}/mcp",
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        headers={**account["headers"], "Host": "evil.example"},
        timeout=10,
    )

    assert response.status_code == 400


def test_mcp_tool_arguments_no_database_takes_are_refused_naming_the_argument(
    api: Any, account: dict[str, Any]
) -> None:
    from sessions_app.models import BrowserSession

    async def scenario(client: Client) -> CallToolResult:
        return await client.call_tool(
            "browser_task", {"prompt": "extract the title\x00", "startingUrl": "https://example.com"}
        )

    result = with_client(f"{api.base}/mcp", scenario, headers=account["headers"])

    body = json.loads(_text(result))
    assert result.is_error and (body["code"], body["details"]["parameter"]) == ("INVALID_PARAMETER", "prompt")
    assert not BrowserSession.objects.filter(team=account["team"]).exists()
