"""Capacity as a client sees it: a slot is free for the next start as soon as its session has
ended, not once the worker has finished closing its browser (a CDP session's own Chromium takes
a while to close)."""

from __future__ import annotations

import os
from typing import Any

import pytest

from sessions_app.models import BrowserSession
from tests.conftest import Api
from tests.helpers import start, terminate


@pytest.mark.slow
def test_a_start_right_after_a_terminate_takes_the_freed_slot(api: Api, pages: str, account: dict[str, Any]) -> None:
    team = account["team"]
    team.session_limit = 50  # the worker's capacity is the limit here, not the team's
    team.save(update_fields=["session_limit"])
    capacity = int(os.environ["ENIGMA_WORKER_CAPACITY"])
    live = BrowserSession.objects.filter(state__in=BrowserSession.LIVE_STATES).count()
    ids = [start(api, startingUrl=f"{pages}/hello.html", cdp=True)["sessionId"] for _ in range(capacity - live)]
    try:
        for sid in ids:
            api.wait_session(sid, "active")
        full = api.post("/start/start-session", {})
        assert full.status_code == 503, full.text  # the worker is full
        for _ in range(3):
            terminate(api, ids.pop(0))  # answered once the session is terminated
            response = api.post("/start/start-session", {"startingUrl": f"{pages}/hello.html", "cdp": True})
            assert response.status_code == 200, response.text
            ids.append(response.json()["sessionId"])
            api.wait_session(ids[-1], "active")
    finally:
        for sid in ids:
            api.message(sid, {"actionType": "state", "newState": "terminate"})
        for sid in ids:
            api.wait_session(sid, "terminated")


@pytest.mark.django_db
def test_placement_counts_a_claimed_session_once_from_its_reservation_to_its_heartbeat(
    account: dict[str, Any],
) -> None:
    """A start is counted against its host while sent but not claimed (reserved), then by the
    worker's heartbeat; the beat that counts it drops the reservation in the same transaction.
    Dropping it at the claim left a gap in which placement saw the host emptier than it was (a
    second orphan of a killed host then went to the same host: tests/fleet)."""
    from sessions_app import registry

    worker = "place-a:1:test"
    host = registry.host_of(worker)

    def claimed() -> str:
        return BrowserSession.objects.create(team=account["team"], worker_id=worker, config={}).pk

    def counted() -> tuple[int, int]:
        (info,) = [h for h in registry.live_hosts() if h.host == host]
        return info.sessions, info.reserved

    first = second = ""
    try:
        registry.worker_heartbeat(worker_id=worker, capacity=4, sessions=0, warm=1)
        first = claimed()
        registry.host_reserve(host, first)
        assert counted() == (0, 1)
        registry.worker_heartbeat(worker_id=worker, capacity=4, sessions=1, warm=0, counted=[first])
        assert counted() == (1, 0)
        # A beat that counts nothing new leaves other starts' reservations alone.
        second = claimed()
        registry.host_reserve(host, second)
        registry.worker_heartbeat(worker_id=worker, capacity=4, sessions=1, warm=0)
        assert counted() == (1, 1)
        assert [h.free for h in registry.live_hosts() if h.host == host] == [2]
    finally:
        registry.host_unreserve(host, second)
        registry.worker_unregister(worker)


@pytest.mark.django_db
def test_placement_frees_a_slot_as_soon_as_its_session_has_ended_before_the_next_heartbeat(
    account: dict[str, Any],
) -> None:
    """The terminate is answered once the session's row is terminated; the worker's beat that
    stops counting it comes a moment later. A start in between must see the slot free (the
    database says which sessions still live on each worker): it was refused with 503 in CI."""
    from sessions_app import registry

    worker = "place-b:1:test"
    host = registry.host_of(worker)
    session = BrowserSession.objects.create(
        team=account["team"], state=BrowserSession.State.ACTIVE, worker_id=worker, config={}
    )

    def free() -> list[int]:
        return [h.free for h in registry.live_hosts() if h.host == host]

    try:
        registry.worker_heartbeat(worker_id=worker, capacity=1, sessions=1, warm=0)
        assert free() == [0]  # the session lives: the host is full
        BrowserSession.objects.filter(pk=session.pk).update(state=BrowserSession.State.TERMINATED)
        assert free() == [1]  # ended: free before the worker's next beat
        # A claimed session not yet counted by a beat is still held by its reservation.
        claimed = BrowserSession.objects.create(
            team=account["team"], state=BrowserSession.State.PENDING, worker_id=worker, config={}
        )
        registry.host_reserve(host, claimed.pk)
        assert free() == [0]
        registry.worker_heartbeat(worker_id=worker, capacity=1, sessions=1, warm=0, counted=[claimed.pk])
        assert free() == [0]
    finally:
        registry.worker_unregister(worker)
