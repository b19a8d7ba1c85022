"""Session benchmarks (issue: sessions and tasks). Prints:

1. POST /start/start-session -> session `active` with its page ready: p50/p95 over N sessions,
   with a warm worker (target p50 <= 100 ms).
2. Memory per idle session at N live sessions (PSS of the worker and its Chromium / N; target
   <= 70 MB).
3. Density: the most idle sessions held while each still answers a task within 5 s.
4. Leaks: Chromium processes, open contexts and Redis keys after N sessions ended, against the
   baseline.
5. Inline waits: 200 requests waiting for their tasks at once must not slow other endpoints.

Usage: .venv/bin/python bench/bench_sessions.py [--sessions 100] [--density-max 300]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import statistics
import sys
import time
from pathlib import Path

import redis
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import chromium_count, percentile, process_tree, pss_mb, stack  # noqa: E402


def wait_active(http: requests.Session, url: str, sid: str, timeout: float = 30) -> None:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if http.get(f"{url}/sessions/{sid}").json().get("state") == "active":
            return
        time.sleep(0.003)
    raise RuntimeError(f"session {sid} not active")


def terminate(http: requests.Session, url: str, sid: str) -> None:
    http.post(
        f"{url}/start/send-message",
        json={"sessionId": sid, "message": {"actionType": "state", "newState": "terminate"}},
    )


def bench_start(url: str, key: str, n: int) -> None:
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {key}"
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        sid = http.post(f"{url}/start/start-session", json={}).json()["sessionId"]
        wait_active(http, url, sid)
        times.append((time.perf_counter() - t0) * 1000)
        terminate(http, url, sid)
        time.sleep(0.05)  # let the warm pool refill, as between real customers' requests
    print(
        f"start-session -> active: n={n} p50={percentile(times, 50):.1f} ms "
        f"p95={percentile(times, 95):.1f} ms mean={statistics.mean(times):.1f} ms"
    )


def bench_memory_and_leaks(url: str, key: str, n: int, worker_pid: int, redis_url: str) -> None:
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {key}"
    r = redis.Redis.from_url(redis_url)
    time.sleep(2)
    base_chromium, base_keys = chromium_count(worker_pid), r.dbsize()
    base_pss = pss_mb(process_tree(worker_pid))
    base_contexts = http.get(f"{url}/start/health").json()["openContexts"]
    ids = []
    for _ in range(n):
        sid = http.post(f"{url}/start/start-session", json={}).json()["sessionId"]
        ids.append(sid)
    for sid in ids:
        wait_active(http, url, sid, timeout=120)
    time.sleep(3)
    live_pss = pss_mb(process_tree(worker_pid))
    print(
        f"memory: {n} idle sessions, worker tree PSS {live_pss:.0f} MB (baseline {base_pss:.0f} MB) -> "
        f"{(live_pss - base_pss) / n:.1f} MB per session"
    )
    for sid in ids:
        terminate(http, url, sid)
    deadline = time.time() + 60
    while time.time() < deadline and http.get(f"{url}/sessions?state=active").json()["pagination"]["total"]:
        time.sleep(0.5)
    # Chromium reaps renderer processes lazily: give it up to 30 s to get back to the baseline.
    deadline = time.time() + 30
    while time.time() < deadline and chromium_count(worker_pid) > base_chromium:
        time.sleep(1)
    health = http.get(f"{url}/start/health").json()
    print(
        f"leaks after {n} sessions: chromium processes {chromium_count(worker_pid)} (baseline {base_chromium}), "
        f"open contexts {health['openContexts']} (warm pool {base_contexts}), "
        f"redis keys {r.dbsize()} (baseline {base_keys}), sessions in use {health['inUse']}"
    )


def bench_density(url: str, key: str, worker_pid: int, maximum: int, step: int) -> None:
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {key}"
    ids: list[str] = []
    best = 0
    while len(ids) < maximum:
        for _ in range(step):
            response = http.post(f"{url}/start/start-session", json={})
            if response.status_code != 200:
                print(f"density: start refused at {len(ids)} sessions ({response.status_code})")
                break
            ids.append(response.json()["sessionId"])
        for sid in ids[-step:]:
            wait_active(http, url, sid, timeout=300)
        probe = ids[len(ids) // 2]
        t0 = time.perf_counter()
        body = http.post(
            f"{url}/start/send-message",
            json={"sessionId": probe, "message": {"actionType": "newTask", "taskDetails": "extract the title"}},
        ).json()
        took = time.perf_counter() - t0
        pss = pss_mb(process_tree(worker_pid))
        ok = body.get("type") == "task_completed" and took < 5
        print(
            f"density: {len(ids)} sessions, task answered in {took * 1000:.0f} ms, worker tree PSS {pss:.0f} MB"
            f" -> {'ok' if ok else 'too slow'}"
        )
        if not ok:
            break
        best = len(ids)
    print(f"density: most idle sessions with a task answered within 5 s: {best} (tested up to {len(ids)})")
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda sid: terminate(http, url, sid), ids))


def bench_inline_waits(url: str, key: str, waiters: int) -> None:
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {key}"
    sids = [http.post(f"{url}/start/start-session", json={}).json()["sessionId"] for _ in range(4)]
    for sid in sids:
        wait_active(http, url, sid)

    def baseline_latency(samples: int = 30) -> list[float]:
        out = []
        for _ in range(samples):
            t0 = time.perf_counter()
            http.get(f"{url}/sessions?limit=1")
            out.append((time.perf_counter() - t0) * 1000)
            time.sleep(0.02)
        return out

    before = baseline_latency()

    def wait_one(i: int) -> int:
        s = requests.Session()
        s.headers["Authorization"] = f"Bearer {key}"
        # Queued behind a long task, each request sits in the inline wait.
        return s.post(
            f"{url}/start/send-message",
            json={"sessionId": sids[i % 4], "message": {"actionType": "newTask", "taskDetails": "wait 8 seconds"}},
            timeout=120,
        ).status_code

    pool = concurrent.futures.ThreadPoolExecutor(waiters)
    futures = [pool.submit(wait_one, i) for i in range(waiters)]
    time.sleep(3)
    during = baseline_latency()
    for sid in sids:
        terminate(http, url, sid)
    codes = [f.result() for f in futures]
    pool.shutdown()
    print(
        f"inline waits: {waiters} requests waiting; GET /sessions p50 {percentile(before, 50):.1f} ms before, "
        f"{percentile(during, 50):.1f} ms during (p95 {percentile(during, 95):.1f} ms); "
        f"responses {sorted(set(codes))}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--density-max", type=int, default=300)
    parser.add_argument("--density-step", type=int, default=50)
    parser.add_argument("--skip-density", action="store_true")
    args = parser.parse_args()
    capacity = max(args.sessions, args.density_max) + 10
    extra = {
        "ENIGMA_RATE_LIMITS": "start-session=100000,send-message=100000,run-task=100000",
        "ENIGMA_INACTIVITY_TIMEOUT_S": "600",
        "ENIGMA_INLINE_WAIT_S": "60",
    }
    with stack(capacity=capacity, extra_env=extra) as s:
        print(f"stack up at {s.url}; worker capacity {capacity}")
        bench_start(s.url, s.key, args.sessions)
        bench_memory_and_leaks(s.url, s.key, args.sessions, s.worker.pid, s.env["REDIS_URL"])
        bench_inline_waits(s.url, s.key, 200)
        if not args.skip_density:
            bench_density(s.url, s.key, s.worker.pid, args.density_max, args.density_step)


if __name__ == "__main__":
    main()
