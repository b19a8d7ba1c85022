"""The environment keeps the browser state of a session whose worker died."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from accounts.services import personal_team, user_create
from environments.selectors import environment_storage_state
from environments.services import environment_create
from sessions_app.models import BrowserSession
from sessions_app.services import session_end
from tests.conftest import Api, Proc, start_worker, wait_for_workers
from tests.environments.helpers import create_environment, new_task, start, terminate

LOGIN = (
    "go to {pages}/login.html then type alice into Username then type s3cret-pw into Password "
    "then click Log in then wait 0.5 seconds then extract the title"
)


def test_a_session_ended_without_its_runner_saves_its_last_checkpoint(transactional_db: Any) -> None:
    team = personal_team(user_create(email="orphan@example.com", password="pw-123456789"))
    environment = environment_create(team=team, name="lost")
    state = {"cookies": [{"name": "auth", "value": "carol", "domain": "127.0.0.1", "path": "/"}], "origins": []}
    session = BrowserSession.objects.create(
        team=team, state=BrowserSession.State.ORPHANED, storage_state=state, config={"environmentId": environment.pk}
    )
    assert session_end(session_id=session.pk, state=BrowserSession.State.FAILED, reason="instance_lost")
    assert environment_storage_state(environment_id=environment.pk) == state
    environment.refresh_from_db()
    assert environment.status == "ready"


@pytest.mark.slow
def test_state_is_saved_back_after_an_orphan_takeover(api: Api, pages: str, worker: Proc, proc_logs: Path) -> None:
    second = start_worker(proc_logs, "w2-env")
    try:
        wait_for_workers(2)
        environment_id = create_environment(api)
        sid = start(api, environmentId=environment_id)["sessionId"]
        api.wait_session(sid, "active")
        assert "Profile of alice" in new_task(api, sid, LOGIN.format(pages=pages))["data"]["message"]
        host_pid = int(BrowserSession.objects.get(pk=sid).worker_id.split(":")[1])
        victim = worker if worker.pid == host_pid else second
        victim.kill()
        api.wait_session(sid, "orphaned", timeout=15)
        api.wait_session(sid, "active", timeout=30)
        terminate(api, sid)
        saved = environment_storage_state(environment_id=environment_id)
        assert saved is not None and any(c["value"] == "alice" for c in saved["cookies"])
        again = start(api, environmentId=environment_id)["sessionId"]
        seen = new_task(api, again, f"go to {pages}/profile.html then extract the title")
        assert "Profile of alice" in seen["data"]["message"]
    finally:
        second.stop()
        if worker.popen is not None and worker.popen.poll() is not None:
            worker.start()
            wait_for_workers(1)
