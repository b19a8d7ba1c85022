"""Steps that many end-to-end tests share: start a session, run a task, wait for a state."""

from __future__ import annotations

import threading
import time
from typing import Any

from sessions_app.models import Task
from tests.conftest import Api


def start(api: Api, **body: Any) -> dict[str, Any]:
    response = api.post("/start/start-session", body)
    assert response.status_code == 200, response.text
    return response.json()


def new_task(api: Api, session_id: str, text: str, **extra: Any) -> dict[str, Any]:
    response = api.message(session_id, {"actionType": "newTask", "newState": "start", "taskDetails": text, **extra})
    assert response.status_code == 200, response.text
    return response.json()


def terminate(api: Api, session_id: str) -> None:
    assert api.message(session_id, {"actionType": "state", "newState": "terminate"}).status_code == 200
    api.wait_session(session_id, "terminated")


def new_task_nowait(api: Api, session_id: str, text: str) -> str:
    """Submit a task without holding the inline wait (the id is read from the database)."""
    before = set(Task.objects.filter(session_id=session_id).values_list("pk", flat=True))
    thread = threading.Thread(
        target=api.message, args=(session_id, {"actionType": "newTask", "taskDetails": text}), daemon=True
    )
    thread.start()
    deadline = time.time() + 10
    while time.time() < deadline:
        new = set(Task.objects.filter(session_id=session_id).values_list("pk", flat=True)) - before
        if new:
            return new.pop()
        time.sleep(0.05)
    raise AssertionError("task was not created")


def wait_state(task_id: str, state: str, timeout: float = 10) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if Task.objects.filter(pk=task_id, state=state).exists():
            return
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} never reached {state}")


def wait_until(check: Any, timeout: float = 10) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met")
