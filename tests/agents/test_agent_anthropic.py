"""The Anthropic provider through the real SDK against the local fake Messages API, on real
Chromium: multi-step tasks, guardrails, secrets, limits, structured output and retries."""

from __future__ import annotations

import json
from collections import deque
from typing import TYPE_CHECKING, Any

import pytest
from playwright.async_api import Page

from agents.config import AgentSettings
from agents.loop import run_agent
from agents.providers import get_provider
from agents.providers.anthropic import AnthropicProvider
from agents.types import AgentError, SecretEntry, TaskSpec
from tests.fakes.fake_anthropic import (
    OVERLOADED,
    RATE_LIMITED,
    FakeAnthropic,
    find_ref,
    message,
    observations,
    text_block,
    tool_block,
    tool_results,
    tool_use,
)

if TYPE_CHECKING:
    from tests.agents.conftest import RecordingCallbacks

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture
def provider(fake_anthropic: FakeAnthropic) -> AnthropicProvider:
    return AnthropicProvider(api_key="sk-ant-test", base_url=fake_anthropic.base_url, max_retries=2, retry_base_s=0.01)


async def test_multi_step_task_completes(
    page: Page, site: str, fake_anthropic: FakeAnthropic, provider: AnthropicProvider, callbacks: RecordingCallbacks
) -> None:
    fake_anthropic.add(
        tool_use("navigate", {"url": f"{site}/index.html"}, thought="Opening the shop."),
        lambda body: tool_use("click_element", {"ref": find_ref(body, r'link "Products"')}, thought="To products."),
        tool_use("extract", {"kind": "tables"}),
        lambda body: tool_use("done", {"result": "Blue widget costs $5"}, thought=tool_results(body)[0]["content"]),
    )

    result = await run_agent(page, TaskSpec(prompt="Find the price of the blue widget"), callbacks, provider=provider)

    assert result.message == "Blue widget costs $5"
    assert (result.input_tokens, result.output_tokens) == (400, 80)
    assert callbacks.usage_calls == [(100, 20)] * 4
    assert callbacks.action_names() == ["navigate", "click_element", "extract"]
    assert callbacks.payloads("action")[1] == {"name": "click_element", "target": 'link "Products"'}
    agent_messages = [p["content"] for p in callbacks.payloads("agent")]
    assert agent_messages[:2] == ["Opening the shop.", "To products."]
    assert "Blue widget | $5" in agent_messages[2]
    first = fake_anthropic.requests[0]
    assert first["model"] == "claude-sonnet-4-5"
    assert first["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert first["tools"][-1]["cache_control"] == {"type": "ephemeral"}
    assert first["max_tokens"] == 4096
    assert "Task: Find the price of the blue widget" in first["messages"][0]["content"][0]["text"]


async def test_old_observations_are_trimmed(
    page: Page, site: str, fake_anthropic: FakeAnthropic, provider: AnthropicProvider, callbacks: RecordingCallbacks
) -> None:
    fake_anthropic.add(
        *(tool_use("navigate", {"url": f"{site}/{name}.html"}) for name in ("index", "products", "form", "long")),
        tool_use("done", {"result": "seen them all"}),
    )

    await run_agent(page, TaskSpec(prompt="Tour the site"), callbacks, provider=provider)

    last = fake_anthropic.requests[-1]
    assert len(observations(last)) == 2
    assert json.dumps(last).count("(older page observation omitted)") == 3


async def test_guardrail_answer_continues_the_same_task(
    page: Page, site: str, fake_anthropic: FakeAnthropic, provider: AnthropicProvider, callbacks: RecordingCallbacks
) -> None:
    callbacks.answers = deque(["Pick the red one"])

    def after_answer(body: dict[str, Any]) -> dict[str, Any]:
        assert tool_results(body)[0]["content"] == "The human answered: Pick the red one"
        return tool_use("done", {"result": "Chose red"})

    fake_anthropic.add(
        tool_use("navigate", {"url": f"{site}/products.html"}),
        tool_use("ask_human", {"question": "Which widget should I pick?"}),
        after_answer,
    )

    result = await run_agent(page, TaskSpec(prompt="Pick a widget"), callbacks, provider=provider)

    assert callbacks.questions == ["Which widget should I pick?"]
    assert result.message == "Chose red"
    assert page.url == f"{site}/products.html"


async def test_secret_values_never_reach_the_model(
    page: Page, site: str, fake_anthropic: FakeAnthropic, provider: AnthropicProvider, callbacks: RecordingCallbacks
) -> None:
    secrets = (SecretEntry(match="127.0.0.1", fields={"email": "carol@example.com", "password": "s3cret-Pa55"}),)

    def fill_form(body: dict[str, Any]) -> dict[str, Any]:
        assert "{{secret:email}}, {{secret:password}}" in observations(body)[-1]
        return message(
            text_block("Logging in with the stored credentials."),
            tool_block("type_text", {"ref": find_ref(body, "Email"), "text": "{{secret:email}}"}),
            tool_block("type_text", {"ref": find_ref(body, "Password"), "text": "{{secret:password}}", "submit": True}),
        )

    def finish(body: dict[str, Any]) -> dict[str, Any]:
        page_text = observations(body)[-1]
        return tool_use("done", {"result": page_text.split("Visible text:\n", 1)[1]})

    fake_anthropic.add(tool_use("navigate", {"url": f"{site}/login.html"}), fill_form, finish)

    result = await run_agent(page, TaskSpec(prompt="Log in", secrets=secrets), callbacks, provider=provider)

    assert "Welcome, carol@example.com" in await page.content()
    assert "Welcome, {{secret:email}}" in result.message
    assert "Your password is {{secret:password}}" in result.message
    sent = b"".join(fake_anthropic.raw_requests) + json.dumps(callbacks.events).encode()
    assert b"carol@example.com" not in sent
    assert b"s3cret-Pa55" not in sent


async def test_input_token_limit_fails_before_overspending(
    page: Page, site: str, fake_anthropic: FakeAnthropic, provider: AnthropicProvider, callbacks: RecordingCallbacks
) -> None:
    fake_anthropic.add(tool_use("navigate", {"url": f"{site}/index.html"}, input_tokens=600))

    with pytest.raises(AgentError) as failure:
        await run_agent(page, TaskSpec(prompt="Browse", max_input_tokens=1000), callbacks, provider=provider)

    assert failure.value.code == "INPUT_TOKEN_LIMIT"
    assert len(fake_anthropic.requests) == 1
    assert callbacks.usage_calls == [(600, 20)]


async def test_output_tokens_are_capped_then_exhausted(
    page: Page, site: str, fake_anthropic: FakeAnthropic, provider: AnthropicProvider, callbacks: RecordingCallbacks
) -> None:
    fake_anthropic.add(
        tool_use("navigate", {"url": f"{site}/index.html"}, output_tokens=20),
        tool_use("scroll", {"direction": "down"}, output_tokens=10),
    )

    with pytest.raises(AgentError) as failure:
        await run_agent(page, TaskSpec(prompt="Browse", max_output_tokens=30), callbacks, provider=provider)

    assert failure.value.code == "OUTPUT_TOKEN_LIMIT"
    assert [r["max_tokens"] for r in fake_anthropic.requests] == [30, 10]


SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "price": {"type": "number"}},
    "required": ["name", "price"],
    "additionalProperties": False,
}


async def test_structured_json_valid_first_time(
    page: Page, fake_anthropic: FakeAnthropic, provider: AnthropicProvider, callbacks: RecordingCallbacks
) -> None:
    fake_anthropic.add(tool_use("done", {"result": {"name": "Blue widget", "price": 5}}))
    task = TaskSpec(prompt="Price?", output_type="structured_json", output_schema=SCHEMA)

    result = await run_agent(page, task, callbacks, provider=provider)

    assert json.loads(result.message) == {"name": "Blue widget", "price": 5}
    done = next(t for t in fake_anthropic.requests[0]["tools"] if t["name"] == "done")
    assert done["input_schema"]["properties"]["result"] == SCHEMA


async def test_structured_json_invalid_then_repaired(
    page: Page, fake_anthropic: FakeAnthropic, provider: AnthropicProvider, callbacks: RecordingCallbacks
) -> None:
    def repaired(body: dict[str, Any]) -> dict[str, Any]:
        feedback = tool_results(body)[0]
        assert feedback["is_error"] is True
        assert "price" in feedback["content"]
        return tool_use("done", {"result": '{"name": "Blue widget", "price": 5.5}'})

    fake_anthropic.add(tool_use("done", {"result": {"name": "Blue widget", "price": "cheap"}}), repaired)
    task = TaskSpec(prompt="Price?", output_type="structured_json", output_schema=SCHEMA)

    result = await run_agent(page, task, callbacks, provider=provider)

    assert json.loads(result.message) == {"name": "Blue widget", "price": 5.5}


async def test_structured_json_invalid_twice_fails(
    page: Page, fake_anthropic: FakeAnthropic, provider: AnthropicProvider, callbacks: RecordingCallbacks
) -> None:
    fake_anthropic.add(tool_use("done", {"result": {"name": 1}}), tool_use("done", {"result": {"name": 2}}))
    task = TaskSpec(prompt="Price?", output_type="structured_json", output_schema=SCHEMA)

    with pytest.raises(AgentError) as failure:
        await run_agent(page, task, callbacks, provider=provider)

    assert failure.value.code == "INVALID_STRUCTURED_OUTPUT"


async def test_structured_csv_rows_get_the_header(
    page: Page, fake_anthropic: FakeAnthropic, provider: AnthropicProvider, callbacks: RecordingCallbacks
) -> None:
    rows = [{"name": "Blue widget", "price": 5}, {"name": "Red, widget", "price": 7}]
    fake_anthropic.add(tool_use("done", {"result": rows}))
    task = TaskSpec(prompt="Prices", output_type="structured_csv", output_schema=["name", "price"])

    result = await run_agent(page, task, callbacks, provider=provider)

    assert result.message == 'name,price\nBlue widget,5\n"Red, widget",7\n'


async def test_overloaded_and_rate_limited_responses_are_retried(
    page: Page, fake_anthropic: FakeAnthropic, provider: AnthropicProvider, callbacks: RecordingCallbacks
) -> None:
    fake_anthropic.add(OVERLOADED, RATE_LIMITED, tool_use("done", {"result": "fine"}))

    result = await run_agent(page, TaskSpec(prompt="Hi"), callbacks, provider=provider)

    assert result.message == "fine"
    assert len(fake_anthropic.requests) == 3


async def test_persistent_overload_is_model_unavailable(
    page: Page, fake_anthropic: FakeAnthropic, provider: AnthropicProvider, callbacks: RecordingCallbacks
) -> None:
    fake_anthropic.add(OVERLOADED, OVERLOADED, OVERLOADED)

    with pytest.raises(AgentError) as failure:
        await run_agent(page, TaskSpec(prompt="Hi"), callbacks, provider=provider)

    assert failure.value.code == "MODEL_UNAVAILABLE"
    assert failure.value.details == {"status": 529, "attempts": 3}


async def test_policy_role_reaches_the_system_prompt(
    page: Page, site: str, fake_anthropic: FakeAnthropic, provider: AnthropicProvider, callbacks: RecordingCallbacks
) -> None:
    fake_anthropic.add(tool_use("done", {"result": "ok"}))

    await run_agent(page, TaskSpec(prompt="Say ok", role="Never buy anything."), callbacks, provider=provider)

    system = fake_anthropic.requests[0]["system"][0]
    assert "Operator instructions for this session (follow them):\nNever buy anything." in system["text"]
    assert system["cache_control"] == {"type": "ephemeral"}


async def test_agent_settings_reach_the_model(
    page: Page, site: str, fake_anthropic: FakeAnthropic, callbacks: RecordingCallbacks
) -> None:
    settings = AgentSettings(
        provider="auto",
        anthropic_api_key="sk-ant-test",
        anthropic_base_url=fake_anthropic.base_url,
        anthropic_model="claude-test-model",
        anthropic_max_retries=1,
        screenshots=True,
    )
    fake_anthropic.add(OVERLOADED, tool_use("done", {"result": "ok"}))
    await page.goto(f"{site}/index.html")

    result = await run_agent(page, TaskSpec(prompt="Say ok"), callbacks, provider=get_provider(settings))

    assert result.message == "ok"
    assert len(fake_anthropic.requests) == 2
    first = fake_anthropic.requests[0]
    assert first["model"] == "claude-test-model"
    images = [b for b in first["messages"][0]["content"] if b["type"] == "image"]
    assert images[0]["source"]["media_type"] == "image/jpeg"
