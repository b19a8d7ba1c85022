"""The offline provider on real Chromium: every instruction, logins with secrets, guardrails,
structured output, blocked navigations and the real Python documentation."""

from __future__ import annotations

import json
from collections import deque
from typing import TYPE_CHECKING

import pytest
from playwright.async_api import Page, Route

from agents.loop import run_agent
from agents.providers.offline import OfflineProvider
from agents.types import AgentError, SecretEntry, TaskSpec, TaskStopped

if TYPE_CHECKING:
    from tests.agents.conftest import RecordingCallbacks

pytestmark = pytest.mark.asyncio(loop_scope="session")

OFFLINE = OfflineProvider()


async def test_navigates_clicks_and_extracts(page: Page, site: str, callbacks: RecordingCallbacks) -> None:
    task = TaskSpec(prompt=f"Go to {site}/index.html, then click Products and then extract the title and headings.")

    result = await run_agent(page, task, callbacks, provider=OFFLINE)

    assert result.message == "Products\n\nh1: Products\nh2: Widgets"
    assert (result.input_tokens, result.output_tokens) == (0, 0)
    assert set(callbacks.usage_calls) == {(0, 0)}
    assert callbacks.action_names() == ["navigate", "click_element", "extract", "extract"]
    assert callbacks.payloads("action")[1]["target"] == 'link "Products"'
    assert callbacks.payloads("agent")[0]["content"].startswith("Step 1/3: Go to")
    assert callbacks.checkpoints >= 4


async def test_search_box_is_found_typed_and_submitted(page: Page, site: str, callbacks: RecordingCallbacks) -> None:
    task = TaskSpec(prompt=f"open {site}/index.html; search for blue widget; click 'Blue widget'; get the url")

    result = await run_agent(page, task, callbacks, provider=OFFLINE)

    assert result.message == f"{site}/widget.html"


async def test_type_into_labelled_field_press_and_extract_text(
    page: Page, site: str, callbacks: RecordingCallbacks
) -> None:
    prompt = f'go to {site}/form.html\ntype "Hello there" into the Message field\npress Enter\nextract the text'

    result = await run_agent(page, TaskSpec(prompt=prompt), callbacks, provider=OFFLINE)

    assert "You wrote: Hello there" in result.message


async def test_scroll_wait_and_links(page: Page, site: str, callbacks: RecordingCallbacks) -> None:
    prompt = f"go to {site}/long.html then scroll down then wait 0.1 seconds then scroll up then return the links"

    result = await run_agent(page, TaskSpec(prompt=prompt), callbacks, provider=OFFLINE)

    assert result.message == f"Back home -> {site}/index.html"
    assert callbacks.action_names() == ["navigate", "scroll", "wait", "scroll", "extract"]


async def test_click_waits_for_late_content(page: Page, site: str, callbacks: RecordingCallbacks) -> None:
    prompt = f"go to {site}/delayed.html then click late link then extract the title"

    result = await run_agent(page, TaskSpec(prompt=prompt), callbacks, provider=OFFLINE)

    assert result.message == "Blue widget"


async def test_login_uses_secrets_and_never_leaks_them(page: Page, site: str, callbacks: RecordingCallbacks) -> None:
    secrets = (
        SecretEntry(match="all", fields={"email": "fallback@example.com", "password": "wrong-pass"}),
        SecretEntry(match="127.0.0.1", fields={"email": "alice@example.com", "password": "hunter2-secret"}),
    )
    prompt = f"go to {site}/login.html then log in then extract the text"

    result = await run_agent(page, TaskSpec(prompt=prompt, secrets=secrets), callbacks, provider=OFFLINE)

    # The page echoed the real values (the most specific entry won); the result shows placeholders.
    assert "Welcome, {{secret:email}}" in result.message
    assert "Your password is {{secret:password}}" in result.message
    assert "Welcome, alice@example.com" in await page.content()
    everything = json.dumps([callbacks.events, result.message, result.extra])
    for value in ("alice@example.com", "hunter2-secret", "fallback@example.com", "wrong-pass"):
        assert value not in everything


async def test_login_without_secrets_asks_the_human(page: Page, site: str, callbacks: RecordingCallbacks) -> None:
    callbacks.answers = deque(["I logged in for you"])
    prompt = f"go to {site}/login.html then log in"

    result = await run_agent(page, TaskSpec(prompt=prompt), callbacks, provider=OFFLINE)

    assert callbacks.questions == [
        "I need login credentials for 127.0.0.1. Please log in or provide them, then resume."
    ]
    assert "I logged in for you" in result.message


async def test_ask_puts_the_answer_in_the_result(page: Page, site: str, callbacks: RecordingCallbacks) -> None:
    callbacks.answers = deque(["blue"])

    result = await run_agent(page, TaskSpec(prompt="ask which color do you want?"), callbacks, provider=OFFLINE)

    assert callbacks.questions == ["which color do you want?"]
    assert result.message == "Done: 0 steps; the human answered: blue"
    assert result.extra["humanAnswers"] == ["blue"]


async def test_stop_during_a_guardrail_propagates(page: Page, site: str, callbacks: RecordingCallbacks) -> None:
    callbacks.answers = deque([None])

    with pytest.raises(TaskStopped):
        await run_agent(page, TaskSpec(prompt="ask may I continue?"), callbacks, provider=OFFLINE)


async def test_purchase_click_needs_approval(page: Page, site: str, callbacks: RecordingCallbacks) -> None:
    callbacks.answers = deque(["no, do not buy anything"])
    prompt = f"go to {site}/products.html then click Buy now then extract the title"

    result = await run_agent(page, TaskSpec(prompt=prompt), callbacks, provider=OFFLINE)

    assert "looks like a purchase" in callbacks.questions[0]
    assert result.message == "Products"


async def test_unsupported_instruction_fails_before_acting(
    page: Page, site: str, callbacks: RecordingCallbacks
) -> None:
    with pytest.raises(AgentError) as failure:
        await run_agent(
            page, TaskSpec(prompt=f"go to {site}/index.html then dance a little"), callbacks, provider=OFFLINE
        )

    assert failure.value.code == "UNSUPPORTED_INSTRUCTION"
    assert "dance a little" in failure.value.message
    assert callbacks.action_names() == []


async def test_missing_element_fails_clearly(page: Page, site: str, callbacks: RecordingCallbacks) -> None:
    with pytest.raises(AgentError) as failure:
        await run_agent(
            page, TaskSpec(prompt=f"go to {site}/index.html then type x into Nonexistent"), callbacks, provider=OFFLINE
        )

    assert failure.value.code == "ELEMENT_NOT_FOUND"


async def test_blocked_navigation_is_reported_not_crashed(page: Page, site: str, callbacks: RecordingCallbacks) -> None:
    async def block(route: Route) -> None:
        await route.abort("blockedbyclient")

    await page.route("**/blocked.example/**", block)

    with pytest.raises(AgentError) as failure:
        await run_agent(page, TaskSpec(prompt="go to http://blocked.example/"), callbacks, provider=OFFLINE)

    assert failure.value.code == "NAVIGATION_BLOCKED"
    assert {"message": "Navigation to blocked.example was blocked by the network policy."} in callbacks.payloads(
        "response_update"
    )


async def test_structured_json_is_built_from_extractions(page: Page, site: str, callbacks: RecordingCallbacks) -> None:
    schema = {
        "type": "object",
        "properties": {"title": {"type": "string"}, "headings": {"type": "array", "items": {"type": "string"}}},
        "required": ["title", "headings"],
        "additionalProperties": False,
    }
    task = TaskSpec(
        prompt=f"go to {site}/products.html then extract the title and headings",
        output_type="structured_json",
        output_schema=schema,
    )

    result = await run_agent(page, task, callbacks, provider=OFFLINE)

    assert json.loads(result.message) == {"title": "Products", "headings": ["Products", "Widgets"]}


async def test_structured_csv_has_one_row_per_item(page: Page, site: str, callbacks: RecordingCallbacks) -> None:
    task = TaskSpec(
        prompt=f"go to {site}/products.html then extract the headings",
        output_type="structured_csv",
        output_schema=["level", "text"],
    )

    result = await run_agent(page, task, callbacks, provider=OFFLINE)

    assert result.message == "level,text\nh1,Products\nh2,Widgets\n"


@pytest.mark.slow
async def test_python_docs_search_and_click(page: Page, python_docs: str, callbacks: RecordingCallbacks) -> None:
    prompt = (
        f"go to {python_docs}/index.html, then search for json, then click json — JSON encoder and decoder, "
        "then extract the headings"
    )

    result = await run_agent(page, TaskSpec(prompt=prompt), callbacks, provider=OFFLINE)

    assert page.url.startswith(f"{python_docs}/library/json.html")
    headings = result.message.splitlines()
    assert headings[0] == "h1: json — JSON encoder and decoder"
    assert "h2: Basic Usage" in headings
