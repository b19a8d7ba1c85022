"""What an attack and a fault run found (issue 13): commands sent before the runner is up, pages
that send text no database takes, and secrets in every encoding a page or a URL gives them."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest

from billing.services import ledger_post
from sessions_app.models import BrowserSession
from tests.conftest import Api
from tests.helpers import start, wait_until

TERMINATE = {"actionType": "state", "newState": "terminate"}


def _start_and_terminate_once_claimed(api: Api, pages: str, out: list[str]) -> None:
    sid = start(api, startingUrl=f"{pages}/hello.html")["sessionId"]
    # Right after a worker claimed it, while its runner is still acquiring a browser.
    deadline = time.time() + 10
    while not BrowserSession.objects.filter(pk=sid).exclude(worker_id="").exists() and time.time() < deadline:
        time.sleep(0.005)
    assert api.message(sid, TERMINATE).status_code == 200
    out.append(sid)


def test_a_terminate_sent_right_after_start_is_applied_every_time(api: Api, pages: str) -> None:
    ended: list[str] = []
    for _ in range(2):
        # Four at once: more than the warm pool, so some runners take a while to come up.
        batch: list[str] = []
        threads = [threading.Thread(target=_start_and_terminate_once_claimed, args=(api, pages, batch))
                   for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert len(batch) == 4
        for sid in batch:
            body = api.wait_session(sid, "terminated", timeout=8)
            assert body["endReason"] == "terminated", body
        ended += batch
    # Billing stops at the end: the last charge covers the time up to it and nothing after.
    def charged() -> dict[str, int]:
        return dict(BrowserSession.objects.filter(pk__in=ended).values_list("pk", "charged_compute_ms"))

    until_end = {s.pk: (s.ended_at - s.created_at) // timedelta(milliseconds=1)
                 for s in BrowserSession.objects.filter(pk__in=ended)}
    assert max(until_end.values()) < 8000
    wait_until(lambda: charged() == until_end)
    time.sleep(1.5)
    assert charged() == until_end


@pytest.mark.django_db
def test_the_command_stream_with_secrets_expires_and_goes_with_a_session_no_runner_claimed() -> None:
    from accounts.services import personal_team, user_create
    from enigma_site.redis import get_redis
    from sessions_app.commands import stream_key, stream_ttl_s
    from sessions_app.schema import parse_message
    from sessions_app.services import session_message

    team = personal_team(user_create(email="stream@example.com"))
    ledger_post(team=team, amount_micros=1_000_000, kind="grant", idempotency_key="stream-grant")
    # A session no worker has claimed yet (worker_id empty), holding a task with a secret.
    session = BrowserSession.objects.create(team=team)
    session_message(session=session, message=parse_message({
        "actionType": "newTask", "taskDetails": "log in",
        "secrets": [{"match": "all", "fields": {"password": "pw-in-the-stream"}}]}))
    redis = get_redis()
    assert b"pw-in-the-stream" in (redis.dump(stream_key(session.pk)) or b"")
    assert 0 < redis.ttl(stream_key(session.pk)) <= stream_ttl_s()
    session_message(session=session, message=parse_message(TERMINATE))
    assert BrowserSession.objects.get(pk=session.pk).state == "terminated"
    assert not redis.exists(stream_key(session.pk))
