"""What an attack and a fault run found (issue 13): commands sent before the runner is up, pages
that send text no database takes, and secrets in every encoding a page or a URL gives them."""

from __future__ import annotations

import json
import threading
import time
from urllib.parse import quote, quote_plus

import pytest
from django.core import serializers

from agents.secrets import SecretVault
from agents.types import SecretEntry
from billing.services import ledger_post
from environments.selectors import environment_storage_state
from sessions_app.metering import session_compute_ms
from sessions_app.models import BrowserSession, SessionEvent, Task
from tests.conftest import Api
from tests.helpers import new_task, new_task_nowait, start, wait_until

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
        threads = [
            threading.Thread(target=_start_and_terminate_once_claimed, args=(api, pages, batch)) for _ in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert len(batch) == 4
        for sid in batch:
            # Terminated as soon as its runner is up (a dropped command ended it by inactivity).
            body = api.wait_session(sid, "terminated", timeout=30)
            assert body["endReason"] == "terminated", body
        ended += batch

    # Billing stops at the end: the last charge covers the time up to it and nothing after.
    def charged() -> dict[str, int]:
        return dict(BrowserSession.objects.filter(pk__in=ended).values_list("pk", "charged_compute_ms"))

    until_end = {s.pk: session_compute_ms(s) for s in BrowserSession.objects.filter(pk__in=ended)}
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
    session_message(
        session=session,
        message=parse_message(
            {
                "actionType": "newTask",
                "taskDetails": "log in",
                "secrets": [{"match": "all", "fields": {"password": "pw-in-the-stream"}}],
            }
        ),
    )
    redis = get_redis()
    assert b"pw-in-the-stream" in (redis.dump(stream_key(session.pk)) or b"")
    assert 0 < redis.ttl(stream_key(session.pk)) <= stream_ttl_s()
    session_message(session=session, message=parse_message(TERMINATE))
    assert BrowserSession.objects.get(pk=session.pk).state == "terminated"
    assert not redis.exists(stream_key(session.pk))


def test_a_page_with_a_lone_surrogate_neither_wedges_the_session_nor_the_next_task(api: Api, pages: str) -> None:
    sid = start(api, startingUrl=f"{pages}/hello.html")["sessionId"]
    api.wait_session(sid, "active")
    first = new_task_nowait(api, sid, f"go to {pages}/surrogate.html then extract the title then extract the text")
    second = new_task(api, sid, "extract the url")
    assert second["type"] == "task_completed", second
    assert second["data"]["message"] == f"{pages}/surrogate.html"
    done = api.wait_task(sid, first)
    assert done["type"] == "task_completed", done
    assert "Broken \ufffd title" in done["data"]["message"]
    assert "lone \ufffd surrogate" in done["data"]["message"]
    session = api.wait_session(sid, "active")
    wait_until(lambda: api.get(f"/sessions/{sid}").json()["currentTitle"] == "Broken \ufffd title")
    assert session["state"] == "active"
    # The events of both tasks were stored and sent.
    wait_until(lambda: SessionEvent.objects.filter(session_id=sid, type="task_completed").count() == 2)


SECRET = "p@ss w/rd&1é"  # a space, URL-reserved characters and a non-ASCII letter


def _written_forms(value: str) -> list[str]:
    """How a page or a URL writes a value: as is, upper-cased, percent-encoded (either hex case,
    `%20` or `+` for spaces)."""
    encoded = [quote(value, safe=""), quote_plus(value, safe="")]
    return [value, value.upper(), *encoded, *(e.lower() for e in encoded)]


def _leaks(text: str) -> list[str]:
    return [form for form in _written_forms(SECRET) if form in text]


def test_secrets_in_any_encoding_stay_out_of_results_events_urls_titles_and_storage(api: Api, pages: str) -> None:
    environment = api.post("/environments", {"name": "careless site"}).json()["environment"]["_id"]
    sid = start(api, environmentId=environment)["sessionId"]
    done = new_task(
        api,
        sid,
        f"go to {pages}/getform.html then log in then wait 1 seconds then extract the title then extract the text",
        secrets=[{"match": "127.0.0.1", "fields": {"password": SECRET}}],
    )
    assert done["type"] == "task_completed", done
    assert "Welcome {{secret:password}}" in done["data"]["message"]
    detail = api.get(f"/sessions/{sid}").json()
    assert "password={{secret:password}}" in detail["currentUrl"], detail["currentUrl"]
    assert detail["currentTitle"] == "Welcome {{secret:password}}"
    # The checkpoint keeps what the site stored, minus every entry holding the secret.
    state = BrowserSession.objects.get(pk=sid).storage_state
    assert state is not None
    assert {c["name"] for c in state["cookies"]} == {"theme"}
    origin = next(o for o in state["origins"] if o["origin"] == pages)
    assert [e["name"] for e in origin["localStorage"]] == ["theme"]
    records = [r for db in origin.get("indexedDB", []) for s in db["stores"] for r in s["records"]]
    assert records and all("dark" in json.dumps(r) for r in records)
    dump = serializers.serialize(
        "json",
        [
            *BrowserSession.objects.filter(pk=sid),
            *Task.objects.filter(session_id=sid),
            *SessionEvent.objects.filter(session_id=sid),
        ],
        ensure_ascii=False,
    )
    assert _leaks(json.dumps(done, ensure_ascii=False) + json.dumps(detail, ensure_ascii=False) + dump) == []
    api.message(sid, TERMINATE)
    api.wait_session(sid, "terminated")
    saved = environment_storage_state(environment_id=environment)
    assert saved is not None and {c["name"] for c in saved["cookies"]} == {"theme"}
    assert _leaks(json.dumps(saved, ensure_ascii=False)) == []


def test_the_vault_finds_a_value_in_every_written_form() -> None:
    vault = SecretVault([SecretEntry(match="all", fields={"password": SECRET})])
    html_forms = ["p&#64;ss&#32;w&#x2F;rd&amp;1&eacute;", "p@ss w/rd&#38;1&#xE9;"]
    for form in [*_written_forms(SECRET), *html_forms, "p%40ss w%2frd&1%C3%A9"]:
        assert vault.scrub(f"before {form} after") == "before {{secret:password}} after", form
    assert vault.holds({"cookies": [{"value": quote(SECRET)}]})
    assert vault.scrub("p@ss w/rd&2é") == "p@ss w/rd&2é"


def test_a_task_that_crashes_the_runner_fails_with_internal_error_and_the_next_one_runs(api: Api, pages: str) -> None:
    from sessions_app.commands import command_push

    sid = start(api, startingUrl=f"{pages}/hello.html")["sessionId"]
    api.wait_session(sid, "active")
    session = BrowserSession.objects.get(pk=sid)
    # A row the runner cannot run (as a bad admin edit or migration would leave it), then a good one.
    broken = Task.objects.create(session=session, seq=1, prompt="extract the title", config={"maxInputTokens": "many"})
    good = Task.objects.create(session=session, seq=2, prompt="extract the title", config={})
    for task in (broken, good):
        command_push(session=sid, kind="newTask", data={"taskId": task.pk, "secrets": []})
    assert api.wait_task(sid, good.pk)["type"] == "task_completed"
    failed = api.get(f"/task/{sid}/{broken.pk}").json()
    assert failed["status"] == "failed" and failed["code"] == "INTERNAL_ERROR", failed
    wait_until(lambda: SessionEvent.objects.filter(session_id=sid, task_id=broken.pk, type="error").exists())
    assert api.get(f"/sessions/{sid}").json()["state"] == "active"
