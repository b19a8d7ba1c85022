"""Billing fixtures: a team with members of each role, and billing_reconcile as a process."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import ROOT, _child_env


@pytest.fixture
def reconcile() -> Callable[[], subprocess.CompletedProcess[str]]:
    """Run `manage.py billing_reconcile` as a process against the test database."""

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", "billing_reconcile"],
            cwd=ROOT,
            env=_child_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )

    return run


@pytest.fixture
def team_members(account: dict[str, Any]) -> dict[str, Any]:
    """The account's team with an admin and a plain member added."""
    from accounts.models import Membership
    from accounts.services import user_create

    team = account["team"]
    users = {"owner": account["user"]}
    for role in (Membership.Role.ADMIN, Membership.Role.MEMBER):
        user = user_create(email=f"{role}{time.time_ns()}@example.com")
        Membership.objects.create(team=team, user=user, role=role)
        users[role] = user
    return {"team": team, **users}
