"""Measure what the egress gate costs: page loads through it against the same pages without it.

Run: .venv/bin/python bench/bench_egress.py [--loads 60] [--assets 20]
A page with N sub-resources (images, a script, a stylesheet) served on 127.0.0.1 is loaded
`--loads` times in one context, alternating:
- "direct": a plain Chromium context, no proxy, no route handler (the browser alone);
- "gated": a BrowserHost session (Chromium as its unprivileged user in its network namespace,
  every request through the gate, as in production; there is no in-browser request interception).
Prints load-time p50/mean per mode, the time added per page, and the CPU the worker process (where
the gate runs) spent per page, as a share of one core during the gated loads.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from playwright.async_api import async_playwright  # noqa: E402

from agents.browser import CHROMIUM_ARGS, BrowserHost, NetworkPolicy  # noqa: E402

CHROMIUM = os.environ.get("ENIGMA_CHROMIUM_PATH", "/usr/lib/chromium/chromium")
ASSET = b"x" * 2048


def _server(assets: int) -> ThreadingHTTPServer:
    images = "".join(f'<img src="/img/{i}.png?n={{n}}" width=8 height=8>' for i in range(assets))
    page = (
        '<title>Bench</title><link rel="stylesheet" href="/s.css?n={n}"><h1>Bench</h1>'
        + images
        + '<script src="/app.js?n={n}"></script>'
    )

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            path, _, query = self.path.partition("?")
            body = page.replace("{n}", query).encode() if path.startswith("/page") else ASSET
            kind = "text/html" if path.startswith("/page") else "application/octet-stream"
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            """Quiet."""

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    return httpd


def _serve_in_child(assets: int) -> tuple[multiprocessing.Process, int]:
    """The site runs in its own process, so this process's CPU is the gate's and Playwright's."""
    httpd = _server(assets)
    port = httpd.server_address[1]
    child = multiprocessing.get_context("fork").Process(target=httpd.serve_forever, daemon=True)
    child.start()
    httpd.socket.close()
    return child, port


async def _load(page: object, url: str) -> float:
    started = time.perf_counter()
    await page.goto(url, wait_until="load")  # type: ignore[attr-defined]
    return (time.perf_counter() - started) * 1000


def _summary(name: str, times: list[float]) -> str:
    return f"{name:7s} p50 {statistics.median(times):7.1f} ms  mean {statistics.fmean(times):7.1f} ms"


async def main(loads: int, assets: int) -> None:
    child, port = _serve_in_child(assets)
    base = f"http://127.0.0.1:{port}"
    playwright = await async_playwright().start()
    plain = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    direct_context = await plain.new_context()
    direct_page = await direct_context.new_page()
    host = BrowserHost(chromium_path=CHROMIUM, warm_pool_size=1)
    await host.start()
    session = await host.acquire(policy=NetworkPolicy(allowed_private_hosts=frozenset({"127.0.0.1"})))
    for n in range(3):  # warm both up
        await _load(direct_page, f"{base}/page?w{n}")
        await _load(session.page, f"{base}/page?w{n}")
    direct: list[float] = []
    gated: list[float] = []
    gated_cpu = direct_cpu = 0.0
    gated_wall = 0.0
    for n in range(loads):
        cpu = time.process_time()
        direct.append(await _load(direct_page, f"{base}/page?d{n}"))
        direct_cpu += time.process_time() - cpu
        cpu = time.process_time()
        gated.append(await _load(session.page, f"{base}/page?g{n}"))
        gated_cpu += time.process_time() - cpu
        gated_wall += gated[-1] / 1000
    sent, received = session.egress_bytes
    await session.close()
    await host.stop()
    await plain.close()
    await playwright.stop()
    child.terminate()
    requests_per_page = assets + 3
    added = statistics.median(gated) - statistics.median(direct)
    gate_cpu_ms = (gated_cpu - direct_cpu) / loads * 1000
    print(f"page: 1 document + {requests_per_page - 1} sub-resources on 127.0.0.1, {loads} loads per mode")
    print(_summary("direct", direct))
    print(_summary("gated", gated))
    print(
        f"added per page: p50 {added:+.1f} ms (target < 10 ms); worker-process CPU per page "
        f"{gated_cpu / loads * 1000:.1f} ms gated vs {direct_cpu / loads * 1000:.1f} ms direct "
        f"(gate ~{gate_cpu_ms:.1f} ms = {gate_cpu_ms / 1000 / (gated_wall / loads) * 100:.1f}% of one core "
        f"while loading; target < 5%)"
    )
    print(f"bytes through the gate: sent {sent}, received {received}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--loads", type=int, default=60)
    parser.add_argument("--assets", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(main(args.loads, args.assets))
