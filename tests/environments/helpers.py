from __future__ import annotations

from tests.conftest import Api
from tests.helpers import new_task, start, terminate

__all__ = ["create_environment", "new_task", "start", "terminate"]


def create_environment(api: Api, name: str = "work") -> str:
    response = api.post("/environments", {"name": name})
    assert response.status_code == 201, response.text
    return response.json()["environment"]["_id"]
