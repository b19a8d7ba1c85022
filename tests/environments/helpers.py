from __future__ import annotations

from typing import Any

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


def create_environment(api: Api, name: str = "work") -> str:
    response = api.post("/environments", {"name": name})
    assert response.status_code == 201, response.text
    return response.json()["environment"]["_id"]
