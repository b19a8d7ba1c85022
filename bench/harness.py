"""Start a throwaway stack for a benchmark: Redis, a migrated SQLite database, a browser worker
and Daphne, all on free ports under a temporary directory; stop everything on exit."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Stack:
    url: str
    key: str
    env: dict[str, str]
    worker: subprocess.Popen[bytes]
    tmp: Path
    # With stack(workers=N > 1): each worker's host id (ENIGMA_HOST_ID) and process.
    workers: dict[str, subprocess.Popen[bytes]] = dataclasses.field(default_factory=dict)


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True
    )


@contextlib.contextmanager
def stack(*, capacity: int = 20, extra_env: dict[str, str] | None = None, workers: int = 1) -> Iterator[Stack]:
    """A throwaway stack; with `workers` > 1, that many browser workers with host ids bench-1..N
    stand for as many hosts (each `capacity` slots; the team may use them all)."""
    tmp = Path(tempfile.mkdtemp(prefix="enigma-bench-"))
    redis_port, web_port = free_port(), free_port()
    env = dict(os.environ)
    env.update(
        {
            "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "ENIGMA_VAR_DIR": str(tmp / "var"),
            "ENIGMA_WORKER_CAPACITY": str(capacity),
            # The bench is one tenant filling the worker: its team may use every slot.
            "ENIGMA_TEAM_SESSION_LIMIT": str(capacity * workers),
            "ENIGMA_ALLOWED_PRIVATE_HOSTS": "127.0.0.1,localhost",
            "ENIGMA_AGENT_PROVIDER": "offline",
            "ENIGMA_LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra_env or {})
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(
            _spawn(
                ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                env,
                tmp / "redis.log",
            )
        )
        time.sleep(0.3)
        subprocess.run([str(BIN / "python"), "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
        key = subprocess.run(
            [str(BIN / "python"), "manage.py", "create_api_key", "--email", "bench@example.com", "--balance", "1000"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        hosts = [f"bench-{n}" for n in range(1, workers + 1)] if workers > 1 else [""]
        spawned: dict[str, subprocess.Popen[bytes]] = {}
        for host in hosts:
            worker_env = {**env, "ENIGMA_HOST_ID": host} if host else env
            spawned[host] = _spawn(
                [
                    str(BIN / "celery"),
                    "-A",
                    "enigma_site",
                    "worker",
                    "-Q",
                    "browsers,celery",
                    "--pool",
                    "threads",
                    "--concurrency",
                    str(capacity),
                    "-n",
                    f"bench{host}@%h",
                    "--loglevel",
                    "WARNING",
                    "--without-gossip",
                    "--without-mingle",
                ],
                worker_env,
                tmp / (f"worker-{host}.log" if host else "worker.log"),
            )
            procs.append(spawned[host])
        worker = next(iter(spawned.values()))
        procs.append(
            _spawn(
                [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(web_port), "enigma_site.asgi:application"],
                env,
                tmp / "daphne.log",
            )
        )
        url = f"http://127.0.0.1:{web_port}"
        deadline = time.time() + 60
        while time.time() < deadline:
            with contextlib.suppress(requests.RequestException):
                if requests.get(url + "/start/health", timeout=1).status_code == 200:
                    break
            time.sleep(0.2)
        else:
            raise RuntimeError(f"stack did not become healthy; logs in {tmp}")
        if workers > 1:
            deadline = time.time() + 90
            while requests.get(url + "/start/health", timeout=5).json().get("workers", 0) < workers:
                if time.time() > deadline:
                    raise RuntimeError(f"not every worker came up; logs in {tmp}")
                time.sleep(0.3)
        yield Stack(url=url, key=key, env=env, worker=worker, tmp=tmp, workers=spawned if workers > 1 else {})
    finally:
        for proc in reversed(procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def process_tree(pid: int) -> list[int]:
    """pid and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(children.get(current, []))
    return out


def pss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
    return total / 1024


def chromium_count(pid: int) -> int:
    count = 0
    for child in process_tree(pid):
        with contextlib.suppress(OSError):
            if "chromium" in Path(f"/proc/{child}/cmdline").read_text():
                count += 1
    return count
