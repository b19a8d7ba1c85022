"""Start latency (issue 17). Prints, for a session without `startingUrl` (POST -> `active`) and
one with the `startingUrl` of a local page (POST -> `active` with `currentUrl` set):

1. sequential starts (one every --interval s, each ended before the next): p50/p95;
2. a burst of --burst starts within --burst-window s: p50/p95 (each client polls every
   --burst-poll-ms: twenty clients at 5 ms would be the web process's main load);
3. the same task answered inline by run-task (a fresh session each time) and by send-message
   on a warm session: p50/p95 of each (issue 17: as fast on a fresh session);
4. the p50 of each step of the worker's start (`sessions_app.starts` log lines): queue (from
   the session's creation to the worker's pick-up), claim, loop (to the runtime's loop), load,
   context (acquire), commands, navigation (guard check and page load), state_write, active_event;

with the load average before and after, since this machine is shared.

Usage: .venv/bin/python bench/bench_starts.py [--sequential 30] [--burst 20] [--warm-pool 2] [--poll-ms 5]
       [--burst-poll-ms 50] [--tasks 15] [--chromium /usr/lib/chromium/chromium-headless-shell]
"""

from __future__ import annotations

import argparse
import atexit
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import ROOT, percentile, stack  # noqa: E402

sys.path.insert(0, str(ROOT))
from agents.config import default_chromium_path  # noqa: E402

POLL_S = 0.005  # --poll-ms: each poll costs the web process CPU the start competes for
PAGE = b"<!doctype html><title>Bench page</title><h1>Hello</h1>"
STEP_RE = re.compile(r"start steps of (\w+): (.*)$")


_SERVER = """
import http.server, sys
PAGE = %r
class Page(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)
    def log_message(self, *args):
        pass
httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
print(httpd.server_address[1], flush=True)
httpd.serve_forever()
"""


def serve_page() -> str:
    """The local page, served by its own process (as a site is): in this process its threads
    would wait for the GIL behind the bench's pollers, which made page loads in a burst slow."""
    server = subprocess.Popen([sys.executable, "-c", _SERVER % PAGE], stdout=subprocess.PIPE, text=True)
    atexit.register(server.kill)
    assert server.stdout is not None
    port = int(server.stdout.readline())
    return f"http://127.0.0.1:{port}/page.html"


def start_once(base: str, key: str, page: str | None, poll_s: float | None = None) -> tuple[float, str]:
    """POST start-session and poll until the session is active (with its currentUrl when it has
    a page); returns the milliseconds from sending the POST and the session id."""
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {key}"
    body = {"startingUrl": page} if page else {}
    t0 = time.perf_counter()
    response = http.post(f"{base}/start/start-session", json=body)
    response.raise_for_status()
    sid = response.json()["sessionId"]
    deadline = t0 + 30
    while time.perf_counter() < deadline:
        state = http.get(f"{base}/sessions/{sid}").json()
        if state.get("state") == "active" and (not page or state.get("currentUrl") == page):
            return (time.perf_counter() - t0) * 1000, sid
        time.sleep(POLL_S if poll_s is None else poll_s)
    raise RuntimeError(f"session {sid} never became active")


def sequential(base: str, key: str, page: str | None, n: int, interval_s: float) -> list[tuple[float, str]]:
    """`n` starts one after another, each ended `interval_s` before the next: (ms, session id)."""
    out = []
    for _ in range(n):
        ms, sid = start_once(base, key, page)
        out.append((ms, sid))
        end(base, key, [sid])
        time.sleep(interval_s)
    return out


def end(base: str, key: str, sessions: list[str]) -> None:
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {key}"
    for sid in sessions:
        http.post(
            f"{base}/start/send-message",
            json={"sessionId": sid, "message": {"actionType": "state", "newState": "terminate"}},
        )
    deadline = time.time() + 30
    while time.time() < deadline and any(
        http.get(f"{base}/sessions/{sid}").json().get("state") == "active" for sid in sessions
    ):
        time.sleep(0.1)


def inline_tasks(base: str, key: str, page: str, n: int, interval_s: float) -> tuple[list[float], list[float]]:
    """The same task `n` times answered inline (ms from the POST to the answer): by run-task on
    a fresh session each time, and by send-message newTask on one warm session."""
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {key}"
    prompt = f"go to {page} then extract the title"

    def answered_ms(path: str, body: dict[str, object]) -> float:
        t0 = time.perf_counter()
        answer = http.post(f"{base}{path}", json=body).json()
        took = (time.perf_counter() - t0) * 1000
        if answer.get("status") != "complete" and answer.get("type") != "task_completed":
            raise RuntimeError(f"{path} did not answer inline: {answer}")
        time.sleep(interval_s)
        return took

    fresh = [answered_ms("/start/run-task", {"taskDetails": prompt}) for _ in range(n)]
    _, sid = start_once(base, key, None)
    task = {"sessionId": sid, "message": {"actionType": "newTask", "taskDetails": prompt}}
    warm = [answered_ms("/start/send-message", task) for _ in range(n)]
    end(base, key, [sid])
    return fresh, warm


def summary(label: str, values: list[float], target_p50: float, target_p95: float) -> str:
    p50, p95 = percentile(values, 50), percentile(values, 95)
    ok = p50 <= target_p50 and p95 <= target_p95
    return (
        f"{label:<34} n={len(values):<3} p50 {p50:7.1f} ms  p95 {p95:7.1f} ms  "
        f"(target p50 <= {target_p50:g}, p95 <= {target_p95:g})  [{'OK' if ok else 'MISS'}]"
    )


def step_medians(log: Path, sessions: set[str]) -> str:
    steps: dict[str, list[float]] = {}
    for line in log.read_text(errors="replace").splitlines():
        match = STEP_RE.search(line)
        if not match or match.group(1) not in sessions:
            continue
        for item in match.group(2).split():
            name, _, value = item.partition("=")
            steps.setdefault(name, []).append(float(value.removesuffix("ms")))
    return "  ".join(f"{name} {percentile(values, 50):.1f}" for name, values in steps.items())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sequential", type=int, default=30)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--burst", type=int, default=20)
    parser.add_argument("--burst-window", type=float, default=2.0)
    parser.add_argument("--warm-pool", type=int, default=2)
    parser.add_argument("--tasks", type=int, default=15, help="inline tasks on each path")
    parser.add_argument("--poll-ms", type=float, default=5.0)
    # 20 clients polling every 5 ms (4,000 requests a second) saturated the web process, and
    # the starts queued behind the polls.
    parser.add_argument("--burst-poll-ms", type=float, default=50.0)
    parser.add_argument("--chromium", default=os.environ.get("CHROMIUM_PATH", "") or default_chromium_path())
    args = parser.parse_args()
    global POLL_S
    POLL_S = args.poll_ms / 1000
    page = serve_page()
    capacity = args.burst + 5
    extra = {
        "ENIGMA_WARM_POOL": str(args.warm_pool),
        "CHROMIUM_PATH": args.chromium,
        "ENIGMA_LOG_LEVEL": "INFO",
        "ENIGMA_RECORDINGS": os.environ.get("ENIGMA_RECORDINGS", "on"),
        "ENIGMA_RATE_LIMITS": "start-session=100000,send-message=100000,run-task=100000",
    }
    print(
        f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; warm pool {args.warm_pool}; "
        f"{args.chromium}"
    )
    with stack(capacity=capacity, extra_env=extra) as s:
        time.sleep(3)  # the warm pool fills
        log = s.tmp / "worker.log"
        for label, target in (("no startingUrl", None), ("startingUrl (local page)", page)):
            t50 = 60 if target is None else 150
            runs = sequential(s.url, s.key, target, args.sequential, args.interval)
            print(summary(f"sequential, {label}", [ms for ms, _ in runs], t50, 300))
            print(f"  worker steps p50 (ms): {step_medians(log, {sid for _, sid in runs})}")
            gap = args.burst_window / args.burst
            with ThreadPoolExecutor(args.burst) as pool:
                futures = []
                for _ in range(args.burst):
                    futures.append(pool.submit(start_once, s.url, s.key, target, args.burst_poll_ms / 1000))
                    time.sleep(gap)
                burst = [f.result() for f in futures]
            print(
                summary(
                    f"burst {args.burst} in {args.burst_window:g} s, {label}",
                    [ms for ms, _ in burst],
                    float("inf"),
                    300,
                )
            )
            print(f"  worker steps p50 (ms): {step_medians(log, {sid for _, sid in burst})}")
            end(s.url, s.key, [sid for _, sid in burst])
            time.sleep(3)
        fresh, warm = inline_tasks(s.url, s.key, page, args.tasks, args.interval)
        fresh50, warm50 = percentile(fresh, 50), percentile(warm, 50)
        print(
            f"task 'go to <local page> then extract the title' answered inline (n={args.tasks}): "
            f"run-task on a fresh session p50 {fresh50:.1f} / p95 {percentile(fresh, 95):.1f} ms, "
            f"send-message on a warm one p50 {warm50:.1f} / p95 {percentile(warm, 95):.1f} ms "
            f"(fresh +{fresh50 - warm50:.1f} ms; target: as fast, within 60 ms, a start without a page)"
            f"  [{'OK' if fresh50 - warm50 <= 60 else 'MISS'}]"
        )
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
