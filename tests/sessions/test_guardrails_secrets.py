"""Guardrails over REST and secrets that never land anywhere but the browser."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core import serializers

from sessions_app.models import BrowserSession, SessionEvent, Task
from tests.conftest import Api, Proc
from tests.helpers import new_task_nowait, wait_state, wait_until


def test_guardrail_round_trip_resumes_the_same_task(api: Api, pages: str) -> None:
    sid = api.post("/start/start-session", {"startingUrl": f"{pages}/hello.html"}).json()["sessionId"]
    api.wait_session(sid, "active")
    task_id = new_task_nowait(api, sid, "ask Which heading should I read? then extract the title")
    wait_state(task_id, "guardrail_trigger")
    polled = api.get(f"/task/{sid}/{task_id}").json()
    assert polled["type"] == "guardrail_trigger"
    assert polled["data"] == {"type": "human_input_needed", "value": "Which heading should I read?"}
    answer = api.message(sid, {"actionType": "guardrail", "taskDetails": "the first one", "newState": "resume"})
    assert answer.json() == {"success": True, "message": "Message sent successfully"}
    wait_state(task_id, "task_completed")
    done = api.get(f"/task/{sid}/{task_id}").json()
    assert done["type"] == "task_completed"
    assert "Hello page" in done["data"]["message"]
    assert Task.objects.filter(session_id=sid).count() == 1  # resumed, not restarted
    # The row is written before its event: wait for the event too.
    wait_until(lambda: SessionEvent.objects.filter(session_id=sid, type="task_completed").exists())
    kinds = list(SessionEvent.objects.filter(session_id=sid, task_id=task_id).values_list("type", flat=True))
    assert kinds.index("guardrail_trigger") < kinds.index("task_completed")


def test_guardrail_stop_ends_the_task(api: Api, pages: str) -> None:
    sid = api.post("/start/start-session", {}).json()["sessionId"]
    api.wait_session(sid, "active")
    task_id = new_task_nowait(api, sid, "ask May I continue?")
    wait_state(task_id, "guardrail_trigger")
    api.message(sid, {"actionType": "guardrail", "newState": "stop"})
    wait_state(task_id, "stopped")
    assert api.get(f"/task/{sid}/{task_id}").json()["status"] == "stopped"


def test_secret_values_reach_only_the_browser(api: Api, pages: str, worker: Proc, proc_logs: Path) -> None:
    secret = "s3cret-pw"
    body = api.post(
        "/start/run-task",
        {
            "taskDetails": f"go to {pages}/login.html then log in then wait 0.5 seconds then extract the title",
            "secrets": [{"match": "127.0.0.1", "fields": {"username": "alice", "password": secret}}],
        },
    ).json()
    assert body["type"] == "task_completed", body
    # Logged in; the user name is a secret field too, so the result shows its placeholder.
    assert body["data"]["message"] == "Profile of {{secret:username}}"
    assert secret not in json.dumps(body)
    api.wait_session(body["sessionId"], "completed")
    dump = serializers.serialize(
        "json", [*BrowserSession.objects.all(), *Task.objects.all(), *SessionEvent.objects.all()]
    )
    assert secret not in dump
    for log in proc_logs.glob("*.log"):
        assert secret not in log.read_text(errors="replace"), log.name
    from enigma_site.redis import get_redis

    redis = get_redis()
    leftovers: list[Any] = [redis.dump(k) for k in redis.scan_iter("enigma:cmd:*")]
    assert all(secret.encode() not in (v or b"") for v in leftovers)
