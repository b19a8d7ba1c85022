"""A broker restart must not leave a worker that advertises capacity and starts nothing, and the
API answers 503 (not 500) while Redis is down. The test runs its own Redis, worker and Daphne so
restarting that Redis does not disturb the rest of the suite."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import Proc, _child_env, free_port

pytestmark = pytest.mark.slow


class OwnRedis:
    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.tmp = tmp
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.tmp),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(100):
            try:
                import redis

                redis.Redis(port=self.port).ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


def _wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_worker_recovers_from_a_redis_restart_and_api_answers_503_meanwhile(
    transactional_db: Any, account: dict[str, Any], tmp_path: Path
) -> None:
    from sessions_app.models import BrowserSession

    redis_server = OwnRedis(tmp_path)
    redis_server.start()
    env = _child_env()
    env.pop("CELERY_BROKER_URL", None)
    env.update(
        {
            "REDIS_URL": f"redis://127.0.0.1:{redis_server.port}/0",
            "ENIGMA_CONSUMER_LOST_EXIT_S": "8",
            "ENIGMA_WORKER_CAPACITY": "2",
            "ENIGMA_WARM_POOL": "1",
        }
    )
    celery = str(Path(sys.executable).with_name("celery"))
    daphne = str(Path(sys.executable).with_name("daphne"))
    worker = Proc(
        [
            celery,
            "-A",
            "enigma_site",
            "worker",
            "-Q",
            "browsers,celery",
            "--pool",
            "threads",
            "--concurrency",
            "2",
            "-n",
            "resilience@%h",
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
        ],
        env,
        tmp_path / "worker.log",
    ).start()
    port = free_port()
    web = Proc(
        [daphne, "-b", "127.0.0.1", "-p", str(port), "enigma_site.asgi:application"], env, tmp_path / "daphne.log"
    ).start()
    base = f"http://127.0.0.1:{port}"
    headers = account["headers"]

    def healthy() -> bool:
        try:
            return requests.get(base + "/start/health", timeout=5).status_code == 200
        except requests.ConnectionError:
            return False

    def start_session() -> requests.Response:
        return requests.post(base + "/start/start-session", json={}, headers=headers, timeout=30)

    def ours(session_id: str) -> bool:
        session = BrowserSession.objects.get(pk=session_id)
        return session.state == "active" and session.worker_id.split(":")[1] == str(worker.pid)

    try:
        _wait(healthy, 90, "a healthy stack")
        first = start_session()
        assert first.status_code == 200, first.text
        _wait(lambda: ours(first.json()["sessionId"]), 30, "the first session to be active")

        redis_server.stop()
        down = start_session()
        assert down.status_code == 503, down.text
        assert down.json()["code"] == "SERVICE_UNAVAILABLE" and down.json()["details"]["down"] == ["redis"]
        redis_server.start()

        def started_after_restart() -> bool:
            response = start_session()
            if response.status_code != 200:
                return False
            session_id = response.json()["sessionId"]
            try:
                _wait(lambda: ours(session_id), 20, "a session started after the restart")
            except AssertionError:
                return False
            return True

        _wait(started_after_restart, 60, "the worker to start sessions again after the Redis restart")
        log = (tmp_path / "worker.log").read_text()
        assert "Unrecoverable error" not in log

        # Redis gone for longer than ENIGMA_CONSUMER_LOST_EXIT_S: the worker exits for its
        # supervisor to restart it, instead of lingering without a consumer.
        redis_server.stop()
        assert worker.popen is not None
        _wait(lambda: worker.popen.poll() is not None, 60, "the worker to exit")
    finally:
        redis_server.stop()
        web.stop()
        worker.stop()


def test_sweep_runs_from_beat_without_any_browser_worker(db: Any) -> None:
    # `db`, not `transactional_db`: the takeover this sweep dispatches must find nothing to claim.
    from datetime import timedelta

    from django.utils import timezone

    from accounts.services import personal_team, user_create
    from enigma_site.celery import app
    from sessions_app.models import BrowserSession
    from sessions_app.tasks import sweep

    entry = app.conf.beat_schedule["sessions.sweep"]
    assert entry["task"] == "sessions.sweep"
    team = personal_team(user_create(email="sweep@example.com", password="pw-123456789"))
    session = BrowserSession.objects.create(
        team=team,
        state=BrowserSession.State.ACTIVE,
        worker_id="gone:1:abc",
        config={},
        heartbeat_at=timezone.now() - timedelta(seconds=60),
    )
    from enigma_site.redis import get_redis

    get_redis().delete("enigma:lock:sweep")
    sweep()
    session.refresh_from_db()
    assert session.state == BrowserSession.State.ORPHANED
