"""Task responses and session rules as the contract states them (seed 002, spec README §3, §5,
api.md §1.12): poll shapes, the session's maxDuration, the codes of ended sessions, file links."""

from __future__ import annotations

import threading

import pytest
import requests

from sessions_app.models import Task
from tests.conftest import Api
from tests.helpers import new_task, start, wait_until

USAGE_KEYS = (
    "inputTokens",
    "outputTokens",
    "computeTime",
    "cost",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "completion_time",
)


@pytest.mark.slow
def test_a_running_task_polls_as_active_with_live_usage_and_answers_pending_inline(api: Api, pages: str) -> None:
    sid = start(api, startingUrl=f"{pages}/hello.html")["sessionId"]
    api.wait_session(sid, "active")
    inline: list[requests.Response] = []
    # Longer than the test server's 20 s inline wait, so the inline answer is "still running".
    message = {"actionType": "newTask", "taskDetails": "wait 25 seconds then extract the title"}
    waiter = threading.Thread(target=lambda: inline.append(api.message(sid, message)), daemon=True)
    waiter.start()
    wait_until(lambda: Task.objects.filter(session_id=sid, state="running").exists())
    task_id = Task.objects.get(session_id=sid).pk
    first = api.get(f"/task/{sid}/{task_id}").json()
    assert first["success"] is True
    assert first["status"] == "active" and first["pending"] is True, first
    assert all(key in first["usage"] for key in USAGE_KEYS)
    wait_until(
        lambda: api.get(f"/task/{sid}/{task_id}").json()["usage"]["computeTime"] > first["usage"]["computeTime"] + 0.5
    )
    waiter.join(30)
    body = inline[0].json()
    assert body["status"] == "pending" and body["pending"] is True, body
    assert body["taskId"] == task_id and body["pollUrl"] == f"{api.base}/task/{sid}/{task_id}"
    api.message(sid, {"actionType": "state", "newState": "stop"})
    assert api.wait_task(sid, task_id)["status"] == "stopped"


def test_a_completed_poll_carries_the_token_fields_in_data(api: Api, pages: str) -> None:
    body = api.post("/start/run-task", {"taskDetails": f"go to {pages}/hello.html then extract the headings"}).json()
    polled = api.get(f"/task/{body['sessionId']}/{body['taskId']}").json()
    assert polled["type"] == "task_completed"
    usage = polled["usage"]
    for data in (polled["data"], polled["result"]["data"]):
        assert "Hello heading" in data["message"]
        assert data["prompt_tokens"] == usage["prompt_tokens"]
        assert data["completion_tokens"] == usage["completion_tokens"]
        assert data["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
        assert data["completion_time"] == usage["completion_time"] > 0


def test_the_session_max_duration_is_the_default_of_later_tasks(api: Api, pages: str) -> None:
    sid = start(api, maxDuration=1500, startingUrl=f"{pages}/hello.html")["sessionId"]
    api.wait_session(sid, "active")
    capped = new_task(api, sid, "wait 5 seconds then extract the title")
    assert capped["status"] == "failed" and capped["code"] == "TASK_TIMEOUT", capped
    assert capped["error"] == "Task exceeded maximum duration of 1500ms"
    own = new_task(api, sid, "wait 2 seconds then extract the title", maxDuration=10_000)
    assert own["type"] == "task_completed", own


def test_a_terminated_session_answers_session_not_found_with_its_reason(api: Api) -> None:
    sid = start(api)["sessionId"]
    api.wait_session(sid, "active")
    api.message(sid, {"actionType": "state", "newState": "terminate"})
    api.wait_session(sid, "terminated")
    for message in (
        {"actionType": "newTask", "taskDetails": "extract the title"},
        {"actionType": "state", "newState": "pause"},
    ):
        after = api.message(sid, message)
        assert after.status_code == 404, after.text
        assert after.json()["code"] == "SESSION_NOT_FOUND"
        assert after.json()["details"] == {"state": "terminated", "reason": "terminated"}


def test_downloaded_files_have_an_absolute_url_from_the_request_origin(api: Api, pages: str) -> None:
    sid = start(api)["sessionId"]
    done = new_task(api, sid, f"go to {pages}/download.html then click Download report then wait 1 seconds")
    assert done["type"] == "task_completed", done
    url = done["data"]["files"][0]["downloadUrl"]
    assert url.startswith(f"{api.base}/files/"), url
    fetched = api.http.get(url, headers=api._headers(None), timeout=10)
    assert fetched.status_code == 200 and fetched.content == b"month,total\njanuary,42\n"
    assert requests.get(url, timeout=10).status_code == 401
