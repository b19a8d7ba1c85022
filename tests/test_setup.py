"""What `make run` sets up: a demo account that is an ordinary customer, and a supervisor that
restarts a program that died."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command

ROOT = Path(__file__).resolve().parent.parent


def _demo_account(*args: str) -> list[str]:
    out = io.StringIO()
    call_command("demo_account", *args, stdout=out)
    return out.getvalue().splitlines()


@pytest.mark.django_db
def test_demo_user_is_not_staff_and_has_a_random_password_printed_once() -> None:
    from accounts.models import User

    first = _demo_account()
    assert first[0].startswith("enig_")
    assert first[1].startswith("password ")
    password = first[1].removeprefix("password ")
    assert len(password) >= 12 and password != "enigma-demo"
    user = User.objects.get(email="demo@enigma.local")
    assert not user.is_staff and not user.is_superuser
    assert authenticate(email="demo@enigma.local", password=password) is not None
    assert authenticate(email="demo@enigma.local", password="enigma-demo") is None

    again = _demo_account()
    assert len(again) == 1 and again[0].startswith("enig_") and again[0] != first[0]
    assert authenticate(email="demo@enigma.local", password=password) is not None


@pytest.mark.django_db
def test_demo_account_demotes_a_demo_superuser_of_an_older_version() -> None:
    from accounts.models import User

    _demo_account()
    User.objects.filter(email="demo@enigma.local").update(is_staff=True, is_superuser=True)
    _demo_account()
    user = User.objects.get(email="demo@enigma.local")
    assert not user.is_staff and not user.is_superuser


@pytest.mark.django_db
def test_demo_user_cannot_log_in_to_admin(client: Any) -> None:
    lines = _demo_account()
    password = lines[1].removeprefix("password ")
    response = client.post("/admin/login/?next=/admin/", {"username": "demo@enigma.local", "password": password})
    assert response.status_code == 200  # the form again, with an error: not staff
    assert client.get("/admin/").status_code == 302


def test_supervisor_restarts_a_program_that_exits_and_stops_all_on_sigterm(tmp_path: Path) -> None:
    starts = tmp_path / "starts"
    crasher = f"{sys.executable} -c \"open('{starts}', 'a').write('x'); raise SystemExit(3)\""
    sleeper = f"{sys.executable} -c \"import time; open('{tmp_path / 'sleeper'}', 'w').write('up'); time.sleep(600)\""
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "supervise.py"), f"crasher={crasher}", f"sleeper={sleeper}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 15
        while time.time() < deadline and (not starts.exists() or len(starts.read_text()) < 3):
            time.sleep(0.2)
        assert starts.exists() and len(starts.read_text()) >= 3, "the crashing program was not restarted"
        assert (tmp_path / "sleeper").exists()
        os.kill(proc.pid, signal.SIGTERM)
        output = proc.communicate(timeout=20)[0].decode()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0
    assert "crasher exited with code 3; restarting" in output
    ps = subprocess.run(["pgrep", "-f", str(tmp_path / "sleeper")], capture_output=True, text=True)
    assert ps.stdout.strip() == "", "the supervisor left a program running"


def test_supervise_stops_the_programs_before_redis_and_leaves_no_child_behind(tmp_path: Path) -> None:
    # A program that takes a second to stop on TERM (as a worker draining its sessions into
    # Redis does) and has a child of its own; "redis" notes when its TERM came.
    user = (
        f'{sys.executable} -c "import signal, subprocess, sys, time\n'
        f"child = subprocess.Popen(['sleep', '600', '{tmp_path}'])\n"
        f"def stop(*_):\n    time.sleep(1); open('{tmp_path / 'user'}', 'w').write(repr(time.time())); sys.exit(0)\n"
        f"signal.signal(signal.SIGTERM, stop); open('{tmp_path / 'up'}', 'w'); time.sleep(600)\""
    )
    redis = (
        f'{sys.executable} -c "import signal, sys, time\n'
        f"def stop(*_):\n    open('{tmp_path / 'redis'}', 'w').write(repr(time.time())); sys.exit(0)\n"
        f'signal.signal(signal.SIGTERM, stop); time.sleep(600)"'
    )
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "supervise.py"), f"redis={redis}", f"worker={user}"],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 15
        while time.time() < deadline and not (tmp_path / "up").exists():
            time.sleep(0.1)
        time.sleep(0.3)  # the child is started too
        os.kill(proc.pid, signal.SIGINT)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    user_stopped = float((tmp_path / "user").read_text())
    redis_stopped = float((tmp_path / "redis").read_text())
    assert redis_stopped >= user_stopped, "redis was stopped while the worker still used it"
    ps = subprocess.run(["pgrep", "-f", f"sleep 600 {tmp_path}"], capture_output=True, text=True)
    assert ps.stdout.strip() == "", "the program's child outlived the supervisor"


def test_the_web_process_keeps_its_start_up_objects_out_of_gc_passes() -> None:
    # A full collection over Django, DRF and the API's modules took 180-200 ms: a stall of
    # every request in flight, every few hundred requests.
    probe = (
        "import gc, time, enigma_site.asgi\n"
        "started = time.perf_counter(); gc.collect()\n"
        "print(gc.get_freeze_count(), (time.perf_counter() - started) * 1000)"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    frozen, full_pass_ms = result.stdout.split()[-2:]
    assert int(frozen) > 100_000
    assert float(full_pass_ms) < 50, full_pass_ms
