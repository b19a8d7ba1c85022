"""Sessions and tasks end to end: HTTP in, a real worker with Chromium, rows and events out."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from sessions_app.models import BrowserSession, SessionEvent, Task
from tests.conftest import Api
from tests.helpers import new_task, new_task_nowait, start, wait_state, wait_until

LOGIN = (
    "go to {pages}/login.html then type alice into Username then type s3cret-pw into Password "
    "then click Log in then wait 0.5 seconds then extract the title"
)


def test_run_task_completes_inline_with_both_response_shapes(api: Api, pages: str) -> None:
    response = api.post("/start/run-task", {"taskDetails": f"go to {pages}/hello.html then extract the headings"})
    assert response.status_code == 200
    assert response.headers["X-RateLimit-Limit"] == "10"
    body = response.json()
    assert body["success"] is True
    assert body["type"] == "task_completed" and body["status"] == "complete"
    assert "Hello heading" in body["data"]["message"]
    assert body["result"]["type"] == "task_completed"
    assert body["result"]["data"]["message"] == body["data"]["message"]
    for key in (
        "inputTokens",
        "outputTokens",
        "computeTime",
        "cost",
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "completion_time",
    ):
        assert key in body["usage"]
    session = api.wait_session(body["sessionId"], "completed")
    assert session["endReason"] == "terminateOnCompletion"
    wait_until(lambda: SessionEvent.objects.filter(session_id=body["sessionId"], name="end_session").exists())


def test_start_session_returns_contract_fields_and_task_id(api: Api, pages: str) -> None:
    body = start(api, initialTask={"taskDetails": "extract the title", "startingPoint": f"{pages}/hello.html"})
    assert body["socketURL"] == api.base
    assert body["streaming"]["dimensions"] == {"width": 1024, "height": 600}
    assert body["streaming"]["webRTCURL"].startswith(api.base + "/whep/vt_")
    assert "/view/" in body["streaming"]["webViewURL"]
    assert body["initialPrompt"] == "extract the title"
    assert body["expiresIn"] > 0 and body["balance"] == 10.0
    assert body["message"] == "Connect to instance using sessionId in auth"
    assert len(body["sessionId"]) == 32
    result = api.wait_task(body["sessionId"], body["taskId"])
    assert result["type"] == "task_completed"
    assert result["data"]["message"].endswith("Hello page")


def test_login_persists_across_tasks_but_not_into_another_session(api: Api, pages: str) -> None:
    first = start(api)
    done = new_task(api, first["sessionId"], LOGIN.format(pages=pages))
    assert done["type"] == "task_completed", done
    assert "Profile of alice" in done["data"]["message"]
    again = new_task(api, first["sessionId"], f"go to {pages}/profile.html then extract the title")
    assert "Profile of alice" in again["data"]["message"]
    other = start(api)
    fresh = new_task(api, other["sessionId"], f"go to {pages}/profile.html then extract the title")
    assert "anonymous" in fresh["data"]["message"]


def test_new_task_while_one_runs_is_queued_and_runs_after(api: Api, pages: str) -> None:
    session = start(api, startingUrl=f"{pages}/hello.html")
    sid = session["sessionId"]
    api.wait_session(sid, "active")
    new_task_nowait(api, sid, "wait 1.5 seconds then extract the url")
    queued = new_task(api, sid, "extract the title")
    assert queued["type"] == "task_completed"
    tasks = list(Task.objects.filter(session_id=sid).order_by("seq"))
    assert [t.state for t in tasks] == ["task_completed", "task_completed"]
    assert tasks[0].completed_at is not None and tasks[1].started_at is not None
    assert tasks[0].completed_at <= tasks[1].started_at


def test_pause_resume_stop_and_terminate(api: Api, pages: str) -> None:
    sid = start(api, startingUrl=f"{pages}/hello.html")["sessionId"]
    api.wait_session(sid, "active")
    task_id = new_task_nowait(api, sid, "wait 1 seconds then extract the title")
    assert api.message(sid, {"actionType": "state", "newState": "pause"}).json() == {
        "success": True,
        "message": "Message sent successfully",
    }
    time.sleep(2.5)
    polled = api.get(f"/task/{sid}/{task_id}").json()
    assert polled["pending"] is True and polled["status"] == "active" and polled["state"] == "paused"
    api.message(sid, {"actionType": "state", "newState": "resume"})
    assert api.wait_task(sid, task_id)["type"] == "task_completed"

    long_id = new_task_nowait(api, sid, "wait 20 seconds then extract the title")
    wait_state(long_id, "running")
    api.message(sid, {"actionType": "state", "newState": "stop"})
    stopped = api.wait_task(sid, long_id, timeout=10)
    assert stopped["status"] == "stopped"
    assert api.get(f"/sessions/{sid}").json()["state"] == "active"

    api.message(sid, {"actionType": "state", "newState": "terminate"})
    ended = api.wait_session(sid, "terminated")
    assert ended["endReason"] == "terminated"
    after = api.message(sid, {"actionType": "newTask", "taskDetails": "extract the title"})
    assert after.status_code == 404 and after.json()["code"] == "SESSION_NOT_FOUND"
    wait_until(lambda: SessionEvent.objects.filter(session_id=sid, name="end_session").exists())
    names = list(SessionEvent.objects.filter(session_id=sid).values_list("type", flat=True))
    assert {"paused", "resumed", "stopped", "end_session"} <= set(names)


def test_click_at_coordinates_hits_the_element_drawn_there(api: Api, pages: str) -> None:
    sid = start(api, startingUrl=f"{pages}/click.html")["sessionId"]
    api.wait_session(sid, "active")
    wait_until(lambda: "click.html" in (api.get(f"/sessions/{sid}").json().get("currentUrl") or ""))
    # The button spans page x 100-300, y 100-200; the stream adds 155 px of chrome on top.
    response = api.message(sid, {"actionType": "interaction", "action": {"type": "CLICK", "x": 150, "y": 285}})
    assert response.json()["success"] is True
    title = new_task(api, sid, "extract the title")["data"]["message"]
    assert "clicked at 150,130" in title
    api.message(sid, {"actionType": "interaction", "action": {"type": "DOUBLE_CLICK", "x": 200, "y": 300}})
    assert "double clicked" in new_task(api, sid, "extract the title")["data"]["message"]
    api.message(sid, {"actionType": "interaction", "action": {"type": "takeOverControl"}})
    api.message(sid, {"actionType": "interaction", "action": {"type": "CLICK", "x": 450, "y": 265}})
    api.message(sid, {"actionType": "interaction", "action": {"type": "TYPE", "text": "hi", "humanLike": True}})
    api.message(sid, {"actionType": "interaction", "action": {"type": "KEY_PRESS", "key": "Enter"}})
    api.message(sid, {"actionType": "interaction", "action": {"type": "releaseControl"}})
    assert "typed hi" in new_task(api, sid, "extract the title")["data"]["message"]
    actions = SessionEvent.objects.filter(session_id=sid, type="action", payload__source="human").count()
    assert actions == 5


class _Recorder(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802
        type(self).hits.append(self.path)
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[tuple[int, list[str]]]:
    _Recorder.hits = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd.server_address[1], _Recorder.hits
    httpd.shutdown()


def test_subresources_of_avoided_domain_are_never_fetched(api: Api, pages: str, recorder: Any) -> None:
    port, hits = recorder
    body = api.post(
        "/start/run-task",
        {
            "taskDetails": f"go to {pages}/avoid.html?port={port} then wait 1 seconds then extract the title",
            "avoidDomains": ["localhost"],
        },
    ).json()
    assert body["type"] == "task_completed", body
    assert hits == []
    blocked = SessionEvent.objects.filter(
        session_id=body["sessionId"], type="response_update", payload__data__blocked__isnull=False
    )
    assert blocked.exists()
    # Without avoidDomains the same page does reach the recorder: the block was ours.
    api.post("/start/run-task", {"taskDetails": f"go to {pages}/avoid.html?port={port} then wait 1 seconds"})
    assert hits


def test_private_address_not_on_the_allow_list_is_blocked(api: Api) -> None:
    hits: list[str] = []

    class Handler(_Recorder):
        pass

    Handler.hits = hits
    httpd = http.server.ThreadingHTTPServer(("127.0.0.2", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.2:{httpd.server_address[1]}/"
        body = api.post("/start/run-task", {"taskDetails": "extract the title", "startingUrl": url}).json()
    finally:
        httpd.shutdown()
    assert body["status"] == "failed"
    assert body["code"] == "NAVIGATION_BLOCKED"
    assert hits == []


def test_max_duration_fails_the_task_with_task_timeout(api: Api, pages: str) -> None:
    body = api.post(
        "/start/run-task", {"taskDetails": "wait 10 seconds then extract the title", "maxDuration": 1500}
    ).json()
    assert body["status"] == "failed"
    assert body["code"] == "TASK_TIMEOUT"
    assert body["error"] == "Task exceeded maximum duration of 1500ms"


def test_unsupported_instruction_fails_with_its_code(api: Api) -> None:
    body = api.post("/start/run-task", {"taskDetails": "make me a sandwich"}).json()
    assert body["status"] == "failed" and body["code"] == "UNSUPPORTED_INSTRUCTION"
    assert body["success"] is False


def test_another_teams_session_and_task_are_404(api: Api, pages: str) -> None:
    from accounts.services import api_key_create, personal_team, user_create

    body = api.post("/start/run-task", {"taskDetails": f"go to {pages}/hello.html"}).json()
    other = user_create(email="intruder@example.com")
    intruder = Api(api.base, api_key_create(team=personal_team(other), user=other).raw)
    poll = intruder.get(f"/task/{body['sessionId']}/{body['taskId']}")
    assert poll.status_code == 404 and poll.json()["code"] == "SESSION_NOT_FOUND"
    assert intruder.get(f"/sessions/{body['sessionId']}").status_code == 404
    message = intruder.message(body["sessionId"], {"actionType": "state", "newState": "terminate"})
    assert message.status_code == 404
    missing_task = api.get(f"/task/{body['sessionId']}/nope")
    assert missing_task.status_code == 404 and missing_task.json()["code"] == "TASK_NOT_FOUND"


def test_503_when_every_browser_slot_is_taken(api: Api, account: dict[str, Any]) -> None:
    from accounts.models import Team
    from sessions_app.registry import live_hosts, total_capacity

    # Slots promised to starts no worker claimed yet (an earlier test's) count as taken.
    wait_until(lambda: all(host.reserved == 0 for host in live_hosts()), timeout=40)
    capacity = total_capacity()
    Team.objects.filter(pk=account["team"].pk).update(session_limit=capacity + 1)  # not the team limit
    ids = [start(api)["sessionId"] for _ in range(capacity)]
    over = api.post("/start/start-session", {})
    assert over.status_code == 503
    assert over.json()["message"] == "No available instances."
    assert over.json()["code"] == "INSTANCE_UNAVAILABLE"
    for sid in ids:
        api.message(sid, {"actionType": "state", "newState": "terminate"})
    for sid in ids:
        api.wait_session(sid, "terminated")


def test_session_list_filters_by_state_and_paginates(api: Api) -> None:
    sid = start(api)["sessionId"]
    api.wait_session(sid, "active")
    listed = api.get("/sessions?state=active&limit=5").json()
    assert [s["sessionId"] for s in listed["sessions"]] == [sid]
    assert listed["pagination"]["total"] == 1
    bad = api.get("/sessions?state=sleeping")
    assert bad.status_code == 400 and bad.json()["details"]["parameter"] == "state"


@pytest.mark.slow
def test_inactive_session_expires(api: Api) -> None:
    sid = start(api)["sessionId"]
    ended = api.wait_session(sid, "terminated", timeout=30)
    assert ended["endReason"] == "expired"
    assert BrowserSession.objects.get(pk=sid).ended_at is not None
    # api.md §1.12: messages to a session that expired answer SESSION_EXPIRED.
    after = api.message(sid, {"actionType": "newTask", "taskDetails": "extract the title"})
    assert after.status_code == 410, after.text
    assert after.json()["code"] == "SESSION_EXPIRED"
    assert after.json()["message"] == "Session expired after 12 seconds of inactivity"
    control = api.message(sid, {"actionType": "state", "newState": "terminate"})
    assert control.status_code == 410 and control.json()["code"] == "SESSION_EXPIRED"
