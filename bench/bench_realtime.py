"""Realtime benchmarks (issue: Socket.IO, live view). Prints, on loopback:

1. Live view through Socket.IO (`frame` events, auth.frames=true) of 1 and of 5 sessions each on
   an animated page: frames per second per session (targets >= 25 for one, >= 10 each for five)
   and paint-to-client latency, Chromium's frame timestamp to the client's receipt (p95 < 150 ms).
2. Worker-event-to-client latency: an event's stored time (SessionEvent.created_at, written by
   the worker just before it publishes) to its receipt by a Socket.IO client, p50/p99 over the
   events of several tasks (target p99 < 50 ms).

Uses the server at ENIGMA_URL with the key ENIGMA_API_KEY (e.g. `make run`; its
ENIGMA_ALLOWED_PRIVATE_HOSTS must allow 127.0.0.1, where this script serves the test pages), or,
without ENIGMA_URL, a throwaway stack (bench/harness.py).

Usage: .venv/bin/python bench/bench_realtime.py [--seconds 5] [--tasks 25]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import http.server
import os
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
import socketio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import percentile, stack  # noqa: E402

PAGES = Path(__file__).resolve().parent.parent / "tests" / "pages"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve_pages() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(PAGES)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()


class Api:
    def __init__(self, url: str, key: str) -> None:
        self.url, self.key = url, key
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {key}"

    def start(self, **body: Any) -> str:
        response = self.http.post(f"{self.url}/start/start-session", json=body, timeout=30)
        response.raise_for_status()
        session_id = response.json()["sessionId"]
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.http.get(f"{self.url}/sessions/{session_id}", timeout=10).json().get("state") == "active":
                return session_id
            time.sleep(0.05)
        raise RuntimeError(f"session {session_id} never became active")

    def message(self, session_id: str, message: dict[str, Any]) -> dict[str, Any]:
        response = self.http.post(
            f"{self.url}/start/send-message", json={"sessionId": session_id, "message": message}, timeout=60
        )
        return response.json()

    def terminate(self, session_id: str) -> None:
        self.message(session_id, {"actionType": "state", "newState": "terminate"})


async def watch(url: str, session_ids: list[str], seconds: float) -> dict[str, Any]:
    """Connect one frames client per session; return fps per session and latencies (ms)."""
    counts = {sid: 0 for sid in session_ids}
    latencies: list[float] = []
    published: list[float] = []
    measuring = False
    clients = []
    for sid in session_ids:
        client = socketio.AsyncClient(reconnection=False)

        async def on_frame(data: dict[str, Any], sid: str = sid) -> None:
            if measuring:
                counts[sid] += 1
                now = time.time()
                if data.get("timestamp"):
                    latencies.append((now - float(data["timestamp"])) * 1000)
                published.append((now - float(data["sentAt"])) * 1000)

        client.on("frame", on_frame)
        await client.connect(url, auth={"sessionId": sid, "frames": True}, transports=["websocket"])
        clients.append(client)
    await asyncio.sleep(2.0)  # screencasts start; the first frames carry start-up costs
    measuring = True
    started = time.monotonic()
    await asyncio.sleep(seconds)
    measuring = False
    elapsed = time.monotonic() - started
    for client in clients:
        await client.disconnect()
    fps = [counts[sid] / elapsed for sid in session_ids]
    return {"fps": fps, "latencies": latencies, "published": published}


async def event_latency(api: Api, session_id: str, pages: str, tasks: int) -> list[float]:
    """Run tasks one after another through the socket (the key's socket may send messages)."""
    received: dict[int, float] = {}
    completed: asyncio.Queue[str] = asyncio.Queue()
    client = socketio.AsyncClient(reconnection=False)

    @client.on("message")
    async def on_message(data: dict[str, Any]) -> None:
        received[data["eventId"]] = time.time()
        if data.get("type") in ("task_completed", "error") and data.get("taskId"):
            completed.put_nowait(data["taskId"])

    await client.connect(api.url, auth={"sessionId": session_id, "apiKey": api.key}, transports=["websocket"])
    for _ in range(tasks):
        ack = await client.call(
            "message",
            {"actionType": "newTask", "taskDetails": f"go to {pages}/hello.html then extract the headings"},
            timeout=30,
        )
        while await asyncio.wait_for(completed.get(), 60) != ack["taskId"]:
            pass
    await client.disconnect()
    log = (await asyncio.to_thread(api.http.get, f"{api.url}/sessions/{session_id}/events?after=0", timeout=30)).json()[
        "events"
    ]
    latencies = []
    for event in log:
        if event["id"] in received:
            stored = datetime.fromisoformat(event["createdAt"]).timestamp()
            latencies.append((received[event["id"]] - stored) * 1000)
    return latencies


async def run(url: str, key: str, seconds: float, tasks: int) -> None:
    api = Api(url, key)
    with serve_pages() as pages:
        for count, target in ((1, 25), (5, 10)):
            sessions = [await asyncio.to_thread(api.start, startingUrl=f"{pages}/animated.html") for _ in range(count)]
            try:
                result = await watch(url, sessions, seconds)
            finally:
                for sid in sessions:
                    await asyncio.to_thread(api.terminate, sid)
            fps, lat, pub = result["fps"], result["latencies"], result["published"]
            ok = min(fps) >= target and percentile(lat, 95) < 150
            print(
                f"live view, {count} watched session(s): fps per session min {min(fps):.1f} "
                f"mean {sum(fps) / len(fps):.1f} (target >= {target}); paint-to-client latency "
                f"p50 {percentile(lat, 50):.1f} ms p95 {percentile(lat, 95):.1f} ms (target p95 < 150); "
                f"worker-publish-to-client p50 {percentile(pub, 50):.1f} ms p95 {percentile(pub, 95):.1f} ms; "
                f"{len(lat)} frames  [{'OK' if ok else 'MISS'}]",
                flush=True,
            )
        sid = await asyncio.to_thread(api.start)
        try:
            lat = await event_latency(api, sid, pages, tasks)
        finally:
            await asyncio.to_thread(api.terminate, sid)
        ok = percentile(lat, 99) < 50
        print(
            f"worker event -> Socket.IO client: p50 {percentile(lat, 50):.1f} ms "
            f"p90 {percentile(lat, 90):.1f} ms p99 {percentile(lat, 99):.1f} ms max {max(lat):.1f} ms "
            f"(target p99 < 50) over {len(lat)} events  [{'OK' if ok else 'MISS'}]",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--tasks", type=int, default=25)
    args = parser.parse_args()
    if os.environ.get("ENIGMA_URL"):
        asyncio.run(run(os.environ["ENIGMA_URL"].rstrip("/"), os.environ["ENIGMA_API_KEY"], args.seconds, args.tasks))
        return
    with stack(capacity=8, extra_env={"ENIGMA_RATE_LIMITS": "start-session=1000,send-message=1000"}) as s:
        asyncio.run(run(s.url, s.key, args.seconds, args.tasks))


if __name__ == "__main__":
    main()
