"""The OpenAI-compatible endpoint through the official `openai` SDK, against the live server."""

from __future__ import annotations

from typing import Any

import openai
import pytest
import requests

MODEL = "enigma-browser-1"


def sdk(server: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server}/v1", api_key=key, max_retries=0, timeout=60)


def test_models_list_has_the_browser_model(api: Any, account: dict[str, Any]) -> None:
    models = sdk(api.base, account["key"]).models.list()

    assert [(m.id, m.object, m.created, m.owned_by) for m in models.data] == [(MODEL, "model", 1704067200, "enigma")]


def test_completion_runs_the_last_user_message_as_a_task(api: Any, account: dict[str, Any], pages: str) -> None:
    from sessions_app.models import BrowserSession

    completion = sdk(api.base, account["key"]).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": f"go to {pages}/hello.html then extract the headings"}],
        max_tokens=500,
    )

    assert completion.object == "chat.completion"
    assert completion.choices[0].finish_reason == "stop"
    assert "Hello heading" in (completion.choices[0].message.content or "")
    assert completion.usage is not None
    extension = (completion.model_extra or {})["enigma"]
    assert completion.id == f"chatcmpl-{extension['taskId']}"
    assert extension["cost"] >= 0
    session = BrowserSession.objects.get(pk=extension["sessionId"])
    assert session.tasks.get().config["maxOutputTokens"] == 500
    api.wait_session(session.pk, "completed")  # terminateOnCompletion ended it


def test_streamed_completion_sends_progress_then_the_answer_then_stop(
    api: Any, account: dict[str, Any], pages: str
) -> None:
    stream = sdk(api.base, account["key"]).chat.completions.create(
        model=MODEL,
        stream=True,
        stream_options={"include_usage": True},
        messages=[{"role": "user", "content": f"go to {pages}/hello.html then extract the headings"}],
    )
    chunks = list(stream)

    deltas = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len([d for d in deltas if d]) > 2  # progress lines before the answer
    assert "Hello heading" in deltas[-2]
    assert [c.choices[0].finish_reason for c in finals] == ["stop"]
    extra = finals[0].model_extra
    assert extra is not None and extra["enigma"]["sessionId"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert len({c.id for c in chunks}) == 1


def test_zero_balance_is_a_402_error_in_openai_format(api: Any, broke_account: dict[str, Any]) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        sdk(api.base, broke_account["key"]).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "extract the title"}]
        )

    assert caught.value.status_code == 402
    assert caught.value.code == "insufficient_balance"
    assert caught.value.type == "billing_error"


def test_guardrail_fails_the_request_and_ends_the_session(api: Any, account: dict[str, Any]) -> None:
    from sessions_app.models import BrowserSession

    with pytest.raises(openai.UnprocessableEntityError) as caught:
        sdk(api.base, account["key"]).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "ask what the password is"}]
        )

    assert caught.value.code == "guardrail_triggered"
    assert caught.value.type == "guardrail_error"
    assert "Guardrail triggered" in caught.value.message
    session = BrowserSession.objects.filter(team=account["team"]).get()
    api.wait_session(session.pk, "terminated")


@pytest.mark.parametrize(
    ("body", "status", "code", "param"),
    [
        ({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}, 404, "model_not_found", "model"),
        ({"model": MODEL}, 400, "missing_required_field", "messages"),
        (
            {"model": MODEL, "messages": [{"role": "tool", "content": "x"}]},
            400,
            "invalid_parameter",
            "messages[0].role",
        ),
        (
            {"model": MODEL, "messages": [{"role": "system", "content": "be brief"}]},
            400,
            "invalid_parameter",
            "messages",
        ),
        (
            {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": -1},
            400,
            "invalid_parameter",
            "max_tokens",
        ),
        (
            {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "tools": []},
            400,
            "invalid_parameter",
            "tools",
        ),
    ],
)
def test_invalid_requests_are_openai_errors_naming_the_param(
    server: str, account: dict[str, Any], body: dict[str, Any], status: int, code: str, param: str
) -> None:
    response = requests.post(f"{server}/v1/chat/completions", json=body, headers=account["headers"], timeout=10)

    assert response.status_code == status
    error = response.json()["error"]
    assert (error["code"], error["param"]) == (code, param)
    assert error["type"] == "invalid_request_error" and error["message"]
    assert response.headers["X-RateLimit-Limit"] == "10"


def test_missing_or_wrong_key_is_a_401_in_openai_format(server: str, transactional_db: Any) -> None:
    for headers in ({}, {"Authorization": "Bearer enig_nope"}):
        response = requests.get(f"{server}/v1/models", headers=headers, timeout=10)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_api_key"


def test_eleventh_request_in_a_minute_is_a_429_rate_limit_error(server: str, account: dict[str, Any]) -> None:
    client = sdk(server, account["key"])
    for _ in range(10):  # every request counts, failed ones too (api.md §6.3)
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])

    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])

    assert caught.value.code == "rate_limit_exceeded"
    assert int(caught.value.response.headers["Retry-After"]) > 0


def test_system_message_is_context_and_the_offline_agent_follows_the_user(
    api: Any, account: dict[str, Any], pages: str
) -> None:
    from sessions_app.models import Task

    completion = sdk(api.base, account["key"]).chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "system", "content": "You are a careful assistant. Answer briefly."},
            {"role": "user", "content": "hello"},
            {"role": "assistant", "content": "Hi, what should I do?"},
            {"role": "user", "content": f"go to {pages}/hello.html then extract the headings"},
        ],
    )

    assert "Hello heading" in (completion.choices[0].message.content or "")
    task = Task.objects.get(pk=(completion.model_extra or {})["enigma"]["taskId"])
    assert "careful assistant" in task.prompt  # the model still gets the context


def test_a_failed_task_is_one_4xx_that_the_sdk_does_not_retry(api: Any, account: dict[str, Any]) -> None:
    from sessions_app.models import BrowserSession, Task

    client = openai.OpenAI(base_url=f"{api.base}/v1", api_key=account["key"], timeout=60)  # default retries
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "do a barrel roll"}])

    assert 400 <= caught.value.status_code < 500
    assert caught.value.code == "unsupported_instruction"
    assert caught.value.type == "task_error"
    assert "barrel roll" in caught.value.message
    assert caught.value.response.headers["x-should-retry"] == "false"
    enigma = caught.value.response.json()["enigma"]
    assert caught.value.body["enigma"] == enigma  # type: ignore[index]
    assert BrowserSession.objects.filter(team=account["team"]).count() == 1
    task = Task.objects.get(session__team=account["team"])
    assert (enigma["sessionId"], enigma["taskId"]) == (task.session_id, task.pk)
    assert enigma["cost"] >= 0


def test_a_failed_streamed_task_sends_its_code_and_the_enigma_object(api: Any, account: dict[str, Any]) -> None:
    stream = sdk(api.base, account["key"]).chat.completions.create(
        model=MODEL, stream=True, messages=[{"role": "user", "content": "do a barrel roll"}]
    )

    with pytest.raises(openai.APIError) as caught:
        list(stream)

    assert caught.value.code == "unsupported_instruction"
    assert caught.value.body["enigma"]["taskId"]  # type: ignore[index]
