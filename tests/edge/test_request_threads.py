"""enigma_site.asgi.RequestThreads: requests' sync code on a few long-lived threads (and so on
warm database connections) instead of a new thread per request, without one slow request ever
holding up another."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from asgiref.sync import ThreadSensitiveContext, sync_to_async

from enigma_site.asgi import RequestThreads


class SyncApp:
    """What Django's ASGIHandler does with a request: a ThreadSensitiveContext of its own, the
    middleware and view in sync_to_async (thread-sensitive) calls inside it."""

    def __init__(self) -> None:
        self.threads: list[int] = []
        self.gate: threading.Event | None = None
        self.inside = 0

    def _view(self, fail: bool) -> None:
        self.threads.append(threading.get_ident())
        if fail:
            raise ValueError("the view failed")
        if self.gate is not None:
            self.inside += 1
            assert self.gate.wait(10), "a request was held up"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        async with ThreadSensitiveContext():
            await sync_to_async(self._view)(scope.get("fail", False))
            await sync_to_async(self._view)(False)  # a second sync call of the same request


def _request(app: RequestThreads, **scope: Any) -> Any:
    return app({"type": "http", **scope}, None, None)


def test_requests_one_after_another_run_on_one_long_lived_thread() -> None:
    inner = SyncApp()
    app = RequestThreads(inner, size=4)

    async def run() -> None:
        for _ in range(5):
            await _request(app)
        try:
            await _request(app, fail=True)
        except ValueError:
            pass
        await _request(app)

    asyncio.run(run())
    assert len(set(inner.threads)) == 1  # Django alone: a new thread per request
    assert threading.get_ident() not in inner.threads


def test_when_every_thread_is_busy_a_request_gets_its_own_and_does_not_wait() -> None:
    inner = SyncApp()
    inner.gate = threading.Event()
    app = RequestThreads(inner, size=2)

    async def run() -> None:
        requests = [asyncio.create_task(_request(app)) for _ in range(4)]
        for _ in range(200):
            if inner.inside == 4:
                break
            await asyncio.sleep(0.01)
        assert inner.inside == 4, "a request waited for another one's thread"
        assert inner.gate is not None
        inner.gate.set()
        await asyncio.gather(*requests)
        inner.threads.clear()
        inner.gate = None
        for _ in range(3):
            await _request(app)

    asyncio.run(run())
    assert len(set(inner.threads)) == 1  # after the rush: back on a pooled thread
