"""Fleet benchmarks (issue 17), with browser workers on this machine standing for hosts. Prints:

1. start latency (POST -> `active` with `currentUrl`, a local page), sequential, on one worker
   and on a fleet of --workers workers: p50/p95 each (target: the fleet within 10% of one);
2. balance: --balance idle sessions started one after another on the fleet, sessions per host
   (target: the busiest and the idlest within 10% of the mean);
3. drain: SIGTERM to a worker holding --drain idle sessions: seconds until every one of them is
   active on another host at its URL, and until the worker exited (and its exit code).

Each worker has --capacity slots and a warm pool of --warm-pool (recordings off: the encoder of
ended sessions would otherwise share the two cores with the starts being measured).

Usage: .venv/bin/python bench/bench_fleet.py [--workers 3] [--sequential 20] [--balance 60] [--drain 20]
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_starts import end, sequential, serve_page, start_once  # noqa: E402
from harness import Stack, percentile, stack  # noqa: E402


def terminate_all(s: Stack, sessions: list[str]) -> None:
    end(s.url, s.key, sessions)
    deadline = time.time() + 60
    while time.time() < deadline and any(state in ("pending", "active") for state, _, _ in rows(s, sessions).values()):
        time.sleep(0.2)


def rows(s: Stack, sessions: list[str]) -> dict[str, tuple[str, str, str]]:
    """state, host and current URL of each session, read from the stack's database."""
    db = sqlite3.connect(f"file:{s.tmp / 'var' / 'enigma.sqlite3'}?mode=ro", uri=True, timeout=10)
    try:
        marks = ",".join("?" * len(sessions))
        found = db.execute(
            f"SELECT id, state, worker_id, current_url FROM sessions_app_browsersession WHERE id IN ({marks})",
            sessions,
        ).fetchall()
    finally:
        db.close()
    return {sid: (state, (worker or "").split(":", 1)[0], url) for sid, state, worker, url in found}


def line(label: str, values: list[float]) -> str:
    return f"{label:<28} n={len(values)}  p50 {percentile(values, 50):7.1f} ms  p95 {percentile(values, 95):7.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--capacity", type=int, default=40)
    parser.add_argument("--warm-pool", type=int, default=2)
    parser.add_argument("--sequential", type=int, default=20)
    parser.add_argument("--balance", type=int, default=60)
    parser.add_argument("--drain", type=int, default=20)
    args = parser.parse_args()
    page = serve_page()
    env = {
        "ENIGMA_WARM_POOL": str(args.warm_pool),
        "ENIGMA_RECORDINGS": "off",
        "ENIGMA_HEARTBEAT_S": "1",
        "ENIGMA_RATE_LIMITS": "start-session=100000,send-message=100000",
    }
    print(f"load average before: {os.getloadavg()[0]:.2f}", flush=True)

    with stack(capacity=args.capacity, extra_env=env) as one:
        time.sleep(3)
        single = [ms for ms, _ in sequential(one.url, one.key, page, args.sequential, 0.5)]
    print(line("one worker, sequential", single), flush=True)

    with stack(capacity=args.capacity, extra_env=env, workers=args.workers) as fleet:
        time.sleep(3)
        spread = [ms for ms, _ in sequential(fleet.url, fleet.key, page, args.sequential, 0.5)]
        p50_one, p50_fleet = percentile(single, 50), percentile(spread, 50)
        verdict = "OK" if p50_fleet <= p50_one * 1.1 else "MISS"
        print(
            f"{line(f'{args.workers} workers, sequential', spread)}  "
            f"(p50 {100 * (p50_fleet - p50_one) / p50_one:+.1f}% vs one worker; target within 10%)  [{verdict}]",
            flush=True,
        )

        sessions = []
        for _ in range(args.balance):
            sessions.append(start_once(fleet.url, fleet.key, page)[1])
            time.sleep(0.2)
        per_host = Counter(host for _, host, _ in rows(fleet, sessions).values())
        mean = args.balance / args.workers
        spread_pct = 100 * (max(per_host.values()) - min(per_host.values())) / mean
        verdict = "OK" if len(per_host) == args.workers and spread_pct <= 10 else "MISS"
        print(
            f"balance: {args.balance} sessions on {args.workers} hosts: {dict(sorted(per_host.items()))}; "
            f"busiest - idlest = {spread_pct:.1f}% of the mean (target <= 10%)  [{verdict}]",
            flush=True,
        )

        # Drain the host holding the most, after trimming it to --drain sessions.
        host, held = per_host.most_common(1)[0]
        on_host = [sid for sid, (_, h, _) in rows(fleet, sessions).items() if h == host]
        extra = on_host[args.drain :]
        terminate_all(fleet, extra)
        moving = on_host[: args.drain]
        urls = {sid: url for sid, (_, _, url) in rows(fleet, moving).items()}
        worker = fleet.workers[host]
        t0 = time.perf_counter()
        worker.send_signal(signal.SIGTERM)  # the worker alone, as systemd (KillMode=mixed) does
        moved_at = exited_at = None
        progress: list[tuple[float, int]] = [(0.0, 0)]
        deadline = t0 + 300
        while time.perf_counter() < deadline and (moved_at is None or exited_at is None):
            if moved_at is None:
                now = rows(fleet, moving)
                done = sum(st == "active" and h != host and url == urls[sid] for sid, (st, h, url) in now.items())
                if done != progress[-1][1]:
                    progress.append((time.perf_counter() - t0, done))
                if done == len(moving):
                    moved_at = time.perf_counter() - t0
            if exited_at is None and worker.poll() is not None:
                exited_at = time.perf_counter() - t0
            time.sleep(0.05)
        print(
            f"drain of a worker holding {len(moving)} idle sessions (SIGTERM): all active elsewhere at their URL "
            f"after {moved_at if moved_at is not None else float('nan'):.2f} s, worker exited after "
            f"{exited_at if exited_at is not None else float('nan'):.2f} s (code {worker.returncode})",
            flush=True,
        )
        print("  moved by then: " + ", ".join(f"{n} at {t:.1f} s" for t, n in progress[1:]), flush=True)
        terminate_all(fleet, sessions)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
