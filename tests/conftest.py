"""Shared fixtures: real Redis (started by scripts/test.sh), a real Celery worker with Chromium,
a real Daphne server, and pages served on 127.0.0.1."""

from __future__ import annotations

import functools
import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
PAGES = Path(__file__).resolve().parent / "pages"

# Timers short enough for tests; the worker and server processes inherit them.
TEST_ENV = {
    "ENIGMA_INLINE_WAIT_S": "20",
    "ENIGMA_INACTIVITY_TIMEOUT_S": "12",
    "ENIGMA_HEARTBEAT_S": "0.5",
    "ENIGMA_HEARTBEAT_STALE_S": "3",
    "ENIGMA_SWEEP_INTERVAL_S": "1",
    "ENIGMA_ORPHAN_GRACE_S": "60",
    "ENIGMA_METER_INTERVAL_S": "1",
    "ENIGMA_WORKER_CAPACITY": "6",
    "ENIGMA_WARM_POOL": "2",
    "ENIGMA_ALLOWED_PRIVATE_HOSTS": "127.0.0.1,localhost",
    "ENIGMA_AGENT_PROVIDER": "offline",
}
os.environ.update({k: v for k, v in TEST_ENV.items() if k not in os.environ})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The `server` fixture's port, chosen up front so the worker knows it: with REDIS_URL and the
# database it is one of the product's own addresses (ENIGMA_OWN_ADDRESSES) the browser may never
# reach, even though the tests allow every other port of 127.0.0.1 and localhost.
SERVER_PORT = free_port()


def _db_url() -> str:
    from django.db import connection

    settings_dict = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings_dict['NAME']}"
    user = settings_dict.get("USER") or ""
    password = f":{settings_dict['PASSWORD']}" if settings_dict.get("PASSWORD") else ""
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{settings_dict['NAME']}"


class Proc:
    """A child process of the test run, stopped at the end (or killed by a test)."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args, self.env, self.log = args, env, log
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        handle = self.log.open("ab")
        self.popen = subprocess.Popen(
            self.args, cwd=ROOT, env=self.env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def kill(self) -> None:
        if self.popen and self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)

    def stop(self) -> None:
        if self.popen and self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["DATABASE_URL"] = _db_url()
    env["PORT"] = str(SERVER_PORT)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_worker(tmp: Path, name: str) -> Proc:
    celery = str(Path(sys.executable).with_name("celery"))
    capacity = os.environ["ENIGMA_WORKER_CAPACITY"]
    return Proc(
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
            capacity,
            "-n",
            f"{name}@%h",
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
        ],
        _child_env(),
        tmp / f"{name}.log",
    ).start()


def wait_for_workers(count: int, timeout: float = 60) -> None:
    from sessions_app.registry import live_workers

    deadline = time.time() + timeout
    while time.time() < deadline:
        if len(live_workers()) >= count:
            return
        time.sleep(0.2)
    raise RuntimeError(f"fewer than {count} browser workers came up")


@pytest.fixture(scope="session", autouse=True)
def _others_off_the_test_database(django_db_setup: Any, django_db_blocker: Any) -> Iterator[None]:
    """On PostgreSQL, before the test database is dropped: wait until the web processes and
    workers stopped by then have left it. Their connections are long-lived
    (DATABASE_CONN_MAX_AGE, ENIGMA_WEB_THREADS) and a server ends a killed client's backend a
    moment later, which made DROP DATABASE fail ("being accessed by other users")."""
    yield
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    others = "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        deadline = time.monotonic() + 10
        while True:
            cursor.execute(f"SELECT count(*) {others}")
            if cursor.fetchone()[0] == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        # A leftover past the wait is ours too: this is a throwaway database.
        cursor.execute(f"SELECT pg_terminate_backend(pid) {others}")


@pytest.fixture(scope="session")
def proc_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("procs")


@pytest.fixture(scope="session")
def worker(django_db_setup: Any, django_db_blocker: Any, proc_logs: Path) -> Iterator[Proc]:
    """One real Celery browser worker for the whole run."""
    from enigma_site.redis import get_redis

    with django_db_blocker.unblock():
        get_redis().delete("enigma:workers")
        proc = start_worker(proc_logs, "w1")
        try:
            wait_for_workers(1)
        except RuntimeError:
            proc.stop()
            print((proc_logs / "w1.log").read_text()[-5000:])
            raise
    yield proc
    proc.stop()


def start_daphne(port: int, log: Path) -> tuple[Proc, str]:
    """A real Daphne serving the ASGI app on 127.0.0.1:`port`, once it answers."""
    daphne = str(Path(sys.executable).with_name("daphne"))
    proc = Proc([daphne, "-b", "127.0.0.1", "-p", str(port), "enigma_site.asgi:application"], _child_env(), log).start()
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            requests.get(url + "/start/health", timeout=5)
            break
        except (requests.ConnectionError, requests.Timeout):  # not listening, or a slow first answer
            time.sleep(0.1)
    return proc, url


@pytest.fixture(scope="session")
def frames_server(django_db_setup: Any, proc_logs: Path) -> Iterator[str]:
    """A second web process for the live-frame tests (viewer, WebRTC, WHEP), started when the
    first of them runs. In clean-clone CI runs the long-lived `server` stopped draining its
    channel-layer inbox for Channels consumers by the time these tests ran (the worker logged
    "channels over capacity in group frames.<id>"), so frames reached a viewer at ~1 fps or not
    at all (issue 18's note). Frames now travel on Redis pub/sub (sessions_app.frames), not on
    the channel layer; these tests keep their own process until a clean-clone run shows the
    shared one delivering them (the viewer's events still use the channel layer)."""
    proc, url = start_daphne(free_port(), proc_logs / "daphne-frames.log")
    yield url
    proc.stop()


@pytest.fixture(scope="session")
def server(django_db_setup: Any, proc_logs: Path) -> Iterator[str]:
    """A real Daphne serving the ASGI app; yields its base URL."""
    proc, url = start_daphne(SERVER_PORT, proc_logs / "daphne.log")
    yield url
    proc.stop()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="session")
def pages() -> Iterator[str]:
    """Static test pages from tests/pages on 127.0.0.1."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(PAGES)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture
def account(transactional_db: Any) -> dict[str, Any]:
    """A user with a personal team holding $10 and an API key."""
    from accounts.services import api_key_create, personal_team, user_create
    from billing.services import ledger_post

    user = user_create(email=f"user{time.time_ns()}@example.com", password="pw-123456789")
    team = personal_team(user)
    ledger_post(team=team, amount_micros=10_000_000, kind="grant", idempotency_key=f"test-grant:{team.pk}")
    created = api_key_create(team=team, user=user, name="test")
    return {
        "user": user,
        "team": team,
        "key": created.raw,
        "api_key": created.api_key,
        "headers": {"Authorization": f"Bearer {created.raw}"},
    }


class Api:
    """A tiny HTTP client for the live server, as a customer would use it."""

    def __init__(self, base: str, key: str | None) -> None:
        self.base, self.key = base, key
        self.http = requests.Session()

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        headers.update(extra or {})
        return headers

    def post(self, path: str, json: Any = None, headers: dict[str, str] | None = None, **kw: Any) -> requests.Response:
        return self.http.post(self.base + path, json=json, headers=self._headers(headers), timeout=60, **kw)

    def get(self, path: str, headers: dict[str, str] | None = None, **kw: Any) -> requests.Response:
        return self.http.get(self.base + path, headers=self._headers(headers), timeout=60, **kw)

    def message(self, session_id: str, message: dict[str, Any]) -> requests.Response:
        return self.post("/start/send-message", {"sessionId": session_id, "message": message})

    def wait_session(self, session_id: str, state: str, timeout: float = 20) -> dict[str, Any]:
        deadline = time.time() + timeout
        body: dict[str, Any] = {}
        while time.time() < deadline:
            body = self.get(f"/sessions/{session_id}").json()
            if body.get("state") == state:
                return body
            time.sleep(0.1)
        raise AssertionError(f"session {session_id} never reached {state}: {body}")

    def wait_task(self, session_id: str, task_id: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.time() + timeout
        body: dict[str, Any] = {}
        while time.time() < deadline:
            body = self.get(f"/task/{session_id}/{task_id}").json()
            if not body.get("pending"):
                return body
            time.sleep(0.1)
        raise AssertionError(f"task {task_id} still pending: {body}")


@pytest.fixture
def api(server: str, worker: Proc, account: dict[str, Any]) -> Iterator[Api]:
    yield Api(server, account["key"])


def quiesce_worker(timeout: float = 15) -> None:
    """End every live session and wait until the workers host none, so the database flush
    after a test never races a runner's writes (PostgreSQL would deadlock on TRUNCATE)."""
    from sessions_app.commands import command_push
    from sessions_app.models import BrowserSession
    from sessions_app.registry import live_workers
    from sessions_app.services import session_end

    for session in BrowserSession.objects.filter(state__in=BrowserSession.LIVE_STATES):
        command_push(session=session, kind="state", data={"newState": "terminate"})
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not BrowserSession.objects.filter(state__in=BrowserSession.LIVE_STATES).exists() and not any(
            w.sessions for w in live_workers()
        ):
            return
        time.sleep(0.1)
    for session in BrowserSession.objects.filter(state__in=BrowserSession.LIVE_STATES):
        session_end(session_id=session.pk, state="terminated", reason="terminated")
    time.sleep(2 * float(os.environ["ENIGMA_HEARTBEAT_S"]))


@pytest.fixture(autouse=True)
def _quiet_worker_after_test(request: pytest.FixtureRequest) -> Iterator[None]:
    uses_worker = "worker" in request.fixturenames and "transactional_db" in request.fixturenames
    if uses_worker:
        # Set up the database first so this teardown runs before its flush.
        request.getfixturevalue("transactional_db")
    yield
    if uses_worker:
        quiesce_worker()
