from __future__ import annotations

import time
from typing import Any

import pytest


@pytest.fixture
def broke_account(transactional_db: Any) -> dict[str, Any]:
    """A second user whose team was never granted any balance."""
    from accounts.services import api_key_create, personal_team, user_create

    user = user_create(email=f"broke{time.time_ns()}@example.com", password="pw-123456789")
    team = personal_team(user)
    created = api_key_create(team=team, user=user, name="broke")
    return {"user": user, "team": team, "key": created.raw, "headers": {"Authorization": f"Bearer {created.raw}"}}
