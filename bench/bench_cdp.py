"""BrowserArena's lifecycle over raw CDP (issue 16): create ("cdp": true) -> connect_over_cdp ->
goto of a local page -> release (terminate), N sequential runs and N at concurrency C; p50/p95
per stage and summed. Targets: create p50 <= 50 ms, lifecycle p50 <= 200 ms, p95 <= 400 ms,
100% success.

    .venv/bin/python bench/bench_cdp.py [--runs 100] [--concurrency 10] [--warm 10]
"""

from __future__ import annotations

import argparse
import asyncio
import http.server
import os
import sys
import threading
import time
from pathlib import Path

import requests
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import async_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import percentile, stack  # noqa: E402

PAGE = b"<!doctype html><title>Bench page</title><h1>Hello</h1>"
STAGES = ("create", "connect", "goto", "release")


class _Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, format: str, *args: object) -> None:
        pass


def serve_page() -> str:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{httpd.server_address[1]}/page.html"


async def lifecycle(p, base: str, key: str, page_url: str) -> dict[str, float] | None:  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {key}"}
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    created = await asyncio.to_thread(
        requests.post, f"{base}/start/start-session", json={"cdp": True}, headers=headers, timeout=30
    )
    times["create"] = (time.perf_counter() - t0) * 1000
    if created.status_code != 200:
        print("create failed", created.status_code, created.text[:200])
        return None
    body = created.json()
    try:
        t = time.perf_counter()
        browser = await p.chromium.connect_over_cdp(body["connectUrl"], timeout=30_000)
        times["connect"] = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        page = browser.contexts[0].pages[0]
        await page.goto(page_url, timeout=30_000)
        times["goto"] = (time.perf_counter() - t) * 1000
        if await page.title() != "Bench page":
            return None
        t = time.perf_counter()
        await browser.close()
        released = await asyncio.to_thread(
            requests.post,
            f"{base}/start/send-message",
            headers=headers,
            timeout=30,
            json={"sessionId": body["sessionId"], "message": {"actionType": "state", "newState": "terminate"}},
        )
        times["release"] = (time.perf_counter() - t) * 1000
        if released.status_code != 200:
            return None
    except (PlaywrightError, requests.RequestException, KeyError, IndexError) as exc:  # counted, not fatal
        print("lifecycle failed:", exc)
        return None
    times["total"] = sum(times[s] for s in STAGES)
    return times


def report(label: str, results: list[dict[str, float] | None]) -> None:
    ok = [r for r in results if r is not None]
    print(f"{label}: n={len(results)} success {len(ok)}/{len(results)} ({100 * len(ok) / len(results):.0f}%)")
    for stage in (*STAGES, "total"):
        values = [r[stage] for r in ok]
        if values:
            print(f"  {stage:8s} p50 {percentile(values, 50):7.1f} ms  p95 {percentile(values, 95):7.1f} ms")
    if ok:
        create = percentile([r["create"] for r in ok], 50)
        total50, total95 = percentile([r["total"] for r in ok], 50), percentile([r["total"] for r in ok], 95)
        verdict = create <= 50 and total50 <= 200 and total95 <= 400 and len(ok) == len(results)
        print(f"  targets: create p50 <= 50, lifecycle p50 <= 200 / p95 <= 400, 100% -> {'OK' if verdict else 'MISS'}")


async def run(base: str, key: str, page_url: str, runs: int, concurrency: int) -> None:
    async with async_playwright() as p:
        for _ in range(3):  # warm-up: the first connect loads Playwright's CDP code paths
            await lifecycle(p, base, key, page_url)
        await asyncio.sleep(5)
        sequential = [await lifecycle(p, base, key, page_url) for _ in range(runs)]
        report("sequential", sequential)
        await asyncio.sleep(10)  # let the warm pool refill
        semaphore = asyncio.Semaphore(concurrency)

        async def one() -> dict[str, float] | None:
            async with semaphore:
                return await lifecycle(p, base, key, page_url)

        concurrent = await asyncio.gather(*(one() for _ in range(runs)))
        report(f"concurrency {concurrency}", list(concurrent))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--warm", type=int, default=10, help="ENIGMA_CDP_WARM_POOL of the worker")
    args = parser.parse_args()
    print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    page_url = serve_page()
    with stack(
        capacity=max(20, args.concurrency * 2),
        extra_env={
            "ENIGMA_CDP_WARM_POOL": str(args.warm),
            "ENIGMA_WARM_POOL": "0",
            "ENIGMA_RECORDINGS": "off",
            "ENIGMA_RATE_LIMITS": "start-session=100000,send-message=100000",
        },
    ) as s:
        time.sleep(15)  # the worker fills its CDP warm pool
        asyncio.run(run(s.url, s.key, page_url, args.runs, args.concurrency))
    print("load average after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
