"""Secrets in the forms a page or a URL writes them never reach the model (through the real SDK
against the local fake Messages API, on real Chromium): percent-encoded with `+` for spaces in
the URL, upper-cased in the title, as is in the text."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, quote_plus

import pytest
from playwright.async_api import Page

from agents.loop import run_agent
from agents.providers.anthropic import AnthropicProvider
from agents.types import SecretEntry, TaskSpec
from tests.fakes.fake_anthropic import FakeAnthropic, observations, tool_use

if TYPE_CHECKING:
    from tests.agents.conftest import RecordingCallbacks

pytestmark = pytest.mark.asyncio(loop_scope="session")

SECRET = "p@ss w/rd&1"


async def test_encoded_secret_values_never_reach_the_model_or_the_result(
    page: Page, site: str, fake_anthropic: FakeAnthropic, callbacks: RecordingCallbacks
) -> None:
    provider = AnthropicProvider(api_key="sk-ant-test", base_url=fake_anthropic.base_url, max_retries=0)
    secrets = (SecretEntry(match="127.0.0.1", fields={"password": SECRET}),)
    await page.goto(f"{site}/echo?message={quote_plus(SECRET)}")
    await page.evaluate("(value) => { document.title = 'Sent ' + value.toUpperCase(); }", SECRET)

    def finish(body: dict[str, Any]) -> dict[str, Any]:
        return tool_use("done", {"result": observations(body)[-1]})

    fake_anthropic.add(finish)
    result = await run_agent(page, TaskSpec(prompt="Report the page", secrets=secrets), callbacks, provider=provider)

    assert "You wrote: {{secret:password}}" in result.message
    assert "message={{secret:password}}" in result.message
    sent = b"".join(fake_anthropic.raw_requests).decode() + json.dumps(callbacks.events) + result.message
    for form in (
        SECRET,
        SECRET.upper(),
        quote(SECRET, safe=""),
        quote_plus(SECRET, safe=""),
        quote_plus(SECRET, safe="").lower(),
    ):
        assert form not in sent, form
