"""A worker killed with SIGKILL: its sessions are orphaned, then taken over by another worker
with their browser state restored; the task that was running is failed, never left running."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from sessions_app.models import BrowserSession, SessionEvent, Task
from tests.conftest import Api, Proc, start_worker, wait_for_workers
from tests.helpers import wait_until

LOGIN = (
    "go to {pages}/login.html then type alice into Username then type s3cret-pw into Password "
    "then click Log in then wait 0.5 seconds then extract the title"
)


@pytest.mark.slow
def test_killed_worker_session_is_orphaned_then_resumed_elsewhere(
    api: Api, pages: str, worker: Proc, proc_logs: Path
) -> None:
    second = start_worker(proc_logs, "w2")
    try:
        wait_for_workers(2)
        sid = api.post("/start/start-session", {}).json()["sessionId"]
        api.wait_session(sid, "active")
        logged_in = api.message(sid, {"actionType": "newTask", "taskDetails": LOGIN.format(pages=pages)}).json()
        assert "Profile of alice" in logged_in["data"]["message"]
        for state in ("pause", "resume"):  # applied by this worker: never again by the next one
            api.message(sid, {"actionType": "state", "newState": state})
        wait_until(lambda: SessionEvent.objects.filter(session_id=sid, type="resumed").exists())
        running = api.message(sid, {"actionType": "newTask", "taskDetails": "wait 30 seconds"})
        assert running.json()["pending"] is True
        time.sleep(0.5)

        host_pid = int(BrowserSession.objects.get(pk=sid).worker_id.split(":")[1])
        victim = worker if worker.pid == host_pid else second
        assert victim.pid == host_pid
        victim.kill()

        api.wait_session(sid, "orphaned", timeout=15)
        # Sent while no worker holds the session: applied once by the one that takes it over.
        assert api.message(sid, {"actionType": "state", "newState": "pause"}).status_code == 200
        # The sweep marks the session orphaned, then fails its task and emits the event.
        wait_until(lambda: SessionEvent.objects.filter(session_id=sid, name="instance:disconnected").exists())
        resumed = api.wait_session(sid, "active", timeout=30)
        assert resumed["state"] == "active"
        wait_until(lambda: SessionEvent.objects.filter(session_id=sid, name="instance:reconnected").exists())
        lost = Task.objects.get(session_id=sid, prompt="wait 30 seconds")
        assert lost.state == "failed" and lost.code == "INSTANCE_LOST"
        wait_until(lambda: BrowserSession.objects.get(pk=sid).paused)
        kinds = list(
            SessionEvent.objects.filter(session_id=sid, type__in=("paused", "resumed")).values_list("type", flat=True)
        )
        assert kinds == ["paused", "resumed", "paused"]
        api.message(sid, {"actionType": "state", "newState": "resume"})

        after = api.message(
            sid, {"actionType": "newTask", "taskDetails": f"go to {pages}/profile.html then extract the title"}
        ).json()
        assert "Profile of alice" in after["data"]["message"]
        new_host = int(BrowserSession.objects.get(pk=sid).worker_id.split(":")[1])
        assert new_host != host_pid
    finally:
        second.stop()
        if worker.popen is not None and worker.popen.poll() is not None:
            worker.start()
            wait_for_workers(1)
