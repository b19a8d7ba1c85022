"""Measure the browser runtime: warm acquire latency, cold context creation, memory per session.

Run: .venv/bin/python bench/bench_browser.py [--sessions 50] [--acquires 100]
Prints warm acquire p50/p95, cold new_context+page p50, and the RSS and PSS of all Chromium
processes divided by the number of idle sessions (each on a small loaded page).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agents.browser import BrowserHost, NetworkPolicy  # noqa: E402

CHROMIUM = os.environ.get("ENIGMA_CHROMIUM_PATH", "/usr/lib/chromium/chromium")
PAGE = b"<title>Bench</title><h1>Hello</h1><p>A simple page.</p><script>let x = 1;</script>"


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Quiet."""


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, stack = [], [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def chromium_memory_kb() -> tuple[int, int, int]:
    """Return (processes, RSS kB, PSS kB) summed over Chromium processes under this process."""
    count = rss = pss = 0
    for pid in _descendants(os.getpid()):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                if b"chromium" not in cmdline.read().split(b"\0", 1)[0]:
                    continue
            with open(f"/proc/{pid}/smaps_rollup") as rollup:
                fields = dict(line.split(":", 1) for line in rollup if ":" in line)
        except OSError:
            continue
        count += 1
        rss += int(fields.get("Rss", "0 kB").split()[0])
        pss += int(fields.get("Pss", "0 kB").split()[0])
    return count, rss, pss


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def main(sessions: int, acquires: int) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    policy = NetworkPolicy(allowed_private_hosts=frozenset({"127.0.0.1"}))

    host = BrowserHost(chromium_path=CHROMIUM, warm_pool_size=2)
    await host.start()
    try:
        warm: list[float] = []
        for _ in range(acquires):
            await host.wait_warm()
            started = time.perf_counter()
            session = await host.acquire(policy=policy)
            warm.append((time.perf_counter() - started) * 1000)
            await session.close()
        print(f"warm acquire      p50 {pct(warm, 0.5):7.3f} ms   p95 {pct(warm, 0.95):7.3f} ms")

        cold: list[float] = []
        for _ in range(20):
            started = time.perf_counter()
            # A storage state forces the cold path: new_context + route + new_page.
            session = await host.acquire(policy=policy, storage_state={"cookies": [], "origins": []})
            cold.append((time.perf_counter() - started) * 1000)
            await session.close()
        print(f"cold context+page p50 {pct(cold, 0.5):7.1f} ms   p95 {pct(cold, 0.95):7.1f} ms")

        await host.wait_warm()
        await asyncio.sleep(1)
        base_count, base_rss, base_pss = chromium_memory_kb()
        opened = []
        for _ in range(sessions):
            session = await host.acquire(policy=policy)
            await session.goto(url)
            opened.append(session)
        await asyncio.sleep(2)  # let renderers settle
        count, rss, pss = chromium_memory_kb()
        print(
            f"idle sessions     N={sessions}: {count} chromium processes "
            f"(baseline {base_count}), total RSS {rss / 1024:.0f} MB, PSS {pss / 1024:.0f} MB"
        )
        print(
            f"per session       RSS {(rss - base_rss) / 1024 / sessions:.1f} MB, "
            f"PSS {(pss - base_pss) / 1024 / sessions:.1f} MB (above the idle browser)"
        )
        for session in opened:
            await session.close()
    finally:
        await host.stop()
        server.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--acquires", type=int, default=100)
    args = parser.parse_args()
    asyncio.run(main(args.sessions, args.acquires))
