"""Soak test of quiet sockets (issue 12 item 1): 50 Socket.IO clients on 10 sessions for 10
minutes, while each session gets a task at random gaps of 0-90 s (so sockets sit idle for up to
90 s at a time). Prints the disconnects (target 0) and the events lost (target 0): every event
in a session's log while the soak ran must reach each of its sockets exactly once.

Half the sockets connect with `auth: {sessionId}` only (watch), half with the API key too.
Clients do not reconnect: a drop is counted, and the events it misses are counted as lost.

Uses a throwaway stack (bench/harness.py), or the server at ENIGMA_URL with ENIGMA_API_KEY.

Usage: .venv/bin/python bench/bench_soak.py [--minutes 10] [--sessions 10] [--sockets 50] [--max-gap 90]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import socketio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_realtime import Api, serve_pages  # noqa: E402
from harness import stack  # noqa: E402


class Watcher:
    """One socket: the event ids it got and whether it was dropped."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.client = socketio.AsyncClient(reconnection=False)
        self.ids: list[int] = []
        self.dropped: list[str] = []
        self.stopping = False
        self.client.on("message", self._on_event)
        self.client.on("end_session", self._on_event)
        self.client.on("disconnect", self._on_disconnect)

    async def _on_event(self, data: dict[str, Any]) -> None:
        self.ids.append(int(data["eventId"]))

    async def _on_disconnect(self, reason: Any = None) -> None:
        if not self.stopping:
            self.dropped.append(str(reason))


async def _drive(api: Api, session_id: str, pages: str, until: float, max_gap: float, gaps: list[float]) -> int:
    """Send tasks to one session at random gaps until `until`; return how many were sent."""
    sent = 0
    while True:
        gap = random.uniform(0, max_gap)
        if time.monotonic() + gap >= until:
            return sent
        await asyncio.sleep(gap)
        gaps.append(gap)
        body = await asyncio.to_thread(
            api.message,
            session_id,
            {"actionType": "newTask", "taskDetails": f"go to {pages}/hello.html then extract the headings"},
        )
        if body.get("taskId"):
            sent += 1
        else:
            print(f"newTask refused: {body}", file=sys.stderr, flush=True)


async def _log_ids(api: Api, session_id: str, after: int) -> list[int]:
    ids: list[int] = []
    while True:
        body = (
            await asyncio.to_thread(api.http.get, f"{api.url}/sessions/{session_id}/events?after={after}", timeout=30)
        ).json()
        page = [int(e["id"]) for e in body["events"]]
        ids += page
        if len(page) < 500:  # events_after's page size
            return ids
        after = page[-1]


async def run(url: str, key: str, minutes: float, sessions: int, sockets: int, max_gap: float) -> None:
    api = Api(url, key)
    with serve_pages() as pages:
        session_ids = [await asyncio.to_thread(api.start) for _ in range(sessions)]
        start_after = {sid: max(await _log_ids(api, sid, 0), default=0) for sid in session_ids}
        watchers = [Watcher(session_ids[i % sessions]) for i in range(sockets)]
        for i, watcher in enumerate(watchers):
            auth: dict[str, Any] = {"sessionId": watcher.session_id}
            if i % 2:
                auth["apiKey"] = key
            await watcher.client.connect(url, auth=auth, transports=["websocket"])
        started = time.monotonic()
        until = started + minutes * 60
        gaps: list[float] = []
        tasks = await asyncio.gather(*(_drive(api, sid, pages, until, max_gap, gaps) for sid in session_ids))
        await asyncio.sleep(max(0.0, until - time.monotonic()) + 3)  # the last events arrive
        expected = {sid: await _log_ids(api, sid, start_after[sid]) for sid in session_ids}
        for watcher in watchers:
            watcher.stopping = True
        disconnects = sum(len(w.dropped) for w in watchers)
        deliveries = sum(len(expected[w.session_id]) for w in watchers)
        lost = sum(len(set(expected[w.session_id]) - set(w.ids)) for w in watchers)
        duplicates = sum(len(w.ids) - len(set(w.ids)) for w in watchers)
        for watcher in watchers:
            await watcher.client.disconnect()
        for sid in session_ids:
            await asyncio.to_thread(api.terminate, sid)
    elapsed = time.monotonic() - started
    ok = disconnects == 0 and lost == 0 and duplicates == 0
    print(
        f"soak: {sockets} sockets on {sessions} sessions for {elapsed / 60:.1f} min, a task per session at "
        f"random gaps of 0-{max_gap:.0f} s ({sum(tasks)} tasks, longest gap {max(gaps, default=0):.0f} s): "
        f"disconnects {disconnects} (target 0), events lost {lost} of {deliveries} deliveries (target 0), "
        f"duplicates {duplicates}  [{'OK' if ok else 'MISS'}]",
        flush=True,
    )
    for watcher in watchers:
        if watcher.dropped:
            print(f"  socket on session {watcher.session_id[:8]}... dropped: {watcher.dropped}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="how long the soak runs (default 10)")
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--sockets", type=int, default=50)
    parser.add_argument("--max-gap", type=float, default=90.0, help="longest gap between a session's tasks (s)")
    args = parser.parse_args()
    options = (args.minutes, args.sessions, args.sockets, args.max_gap)
    if os.environ.get("ENIGMA_URL"):
        asyncio.run(run(os.environ["ENIGMA_URL"].rstrip("/"), os.environ["ENIGMA_API_KEY"], *options))
        return
    limits = {
        "ENIGMA_RATE_LIMITS": "start-session=1000,send-message=1000",
        "ENIGMA_TEAM_SESSION_LIMIT": str(args.sessions + 2),
    }
    with stack(capacity=args.sessions + 2, extra_env=limits) as s:
        asyncio.run(run(s.url, s.key, *options))


if __name__ == "__main__":
    main()
