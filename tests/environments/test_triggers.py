"""Triggers (/cron-jobs): schedules, runs listed with results and a webhook, auto-pause."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from django.utils import timezone

from tests.conftest import Api
from tests.environments.helpers import create_environment
from tests.environments.test_webhooks import Receiver
from triggers.schedule import next_run
from triggers.services import triggers_run_due
from webhooks.signing import verify


def wait_run(api: Api, trigger_id: str, count: int, timeout: float = 30) -> list[dict[str, Any]]:
    deadline = time.time() + timeout
    runs: list[dict[str, Any]] = []
    while time.time() < deadline:
        runs = api.get(f"/cron-jobs/{trigger_id}/runs").json()["runs"]
        if len(runs) >= count and all(r["status"] != "running" for r in runs):
            return runs
        time.sleep(0.2)
    raise AssertionError(f"runs did not finish: {runs}")


def test_schedules_in_time_zones() -> None:
    after = datetime(2026, 3, 2, 7, 30, tzinfo=UTC)  # a Monday
    cron = next_run(schedule_type="cron", at=None, interval="", cron="0 9 * * 1-5", tz="Europe/Paris", after=after)
    assert cron == datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # 09:00 in Paris (UTC+1)
    every = next_run(
        schedule_type="every",
        at=None,
        interval="30m",
        cron="",
        tz="UTC",
        after=after,
        previous=after - timedelta(minutes=70),
    )
    assert every == after + timedelta(minutes=20)  # keeps its phase after missed ticks
    assert next_run(schedule_type="at", at=after, interval="", cron="", tz="UTC", after=after) is None


def test_trigger_validation(api: Api) -> None:
    environment_id = create_environment(api)
    base = {
        "name": "daily",
        "environmentId": environment_id,
        "scheduleType": "cron",
        "scheduleCron": "0 9 * * *",
        "prompt": "extract the title",
        "webhook": {"url": "http://127.0.0.1:9/hook"},
    }
    assert api.post("/cron-jobs", {**base, "name": ""}).json()["message"] == "name is required"
    assert api.post("/cron-jobs", {**base, "prompt": " "}).json()["message"] == "prompt is required"
    assert (
        api.post("/cron-jobs", {**base, "environmentId": None}).json()["message"] == "Valid environmentId is required"
    )
    assert api.post("/cron-jobs", {**base, "environmentId": "f" * 24}).status_code == 404
    no_hook = {k: v for k, v in base.items() if k != "webhook"}
    assert api.post("/cron-jobs", no_hook).json()["message"] == (
        "webhook config is required when deliveryMode includes webhook"
    )
    assert (
        api.post("/cron-jobs", {**base, "scheduleCron": "every day"}).json()["details"]["parameter"] == "scheduleCron"
    )
    assert api.post("/cron-jobs", {**base, "timezone": "Mars/Olympus"}).json()["details"]["parameter"] == "timezone"
    created = api.post("/cron-jobs", {**base, "timezone": "America/New_York"})
    assert created.status_code == 201, created.text
    job = created.json()["cronJob"]
    assert job["status"] == "active" and job["nextRunAt"] and job["maxConsecutiveFailures"] == 5
    paused = api.post(f"/cron-jobs/{job['_id']}/pause").json()
    assert paused["cronJob"] == {"_id": job["_id"], "status": "paused"}
    assert api.post(f"/cron-jobs/{job['_id']}/pause").json()["message"] == 'Cannot pause a job with status "paused"'
    assert api.post(f"/cron-jobs/{job['_id']}/resume").json()["cronJob"]["consecutiveFailures"] == 0
    deleted = api.http.delete(api.base + f"/cron-jobs/{job['_id']}", headers=api._headers(None)).json()
    assert deleted["message"] == "Cron job deleted"
    assert api.get(f"/cron-jobs/{job['_id']}").json()["message"] == "Cron job not found"


def test_overflowing_schedules_answer_400_naming_the_field(api: Api) -> None:
    environment_id = create_environment(api)
    base = {
        "name": "odd",
        "environmentId": environment_id,
        "prompt": "extract the title",
        "webhook": {"url": "http://127.0.0.1:9/hook"},
    }
    cases = [
        ({"scheduleType": "at", "scheduleAt": "2024-02-30T09:00:00Z"}, "scheduleAt"),
        ({"scheduleType": "at", "scheduleAt": "9999-12-31T23:59:59-12:00"}, "scheduleAt"),
        ({"scheduleType": "at", "scheduleAt": "0001-01-01T00:00:00+14:00"}, "scheduleAt"),
        ({"scheduleType": "every", "scheduleInterval": "99999999999999999999d"}, "scheduleInterval"),
        ({"scheduleType": "every", "scheduleInterval": "999999999d"}, "scheduleInterval"),
        ({"scheduleType": "cron", "scheduleCron": "0 0 30 2 *"}, "scheduleCron"),
        ({"scheduleType": "cron", "scheduleCron": "0 0 31 4,6 *"}, "scheduleCron"),
    ]
    for schedule, field in cases:
        response = api.post("/cron-jobs", {**base, **schedule})
        assert response.status_code == 400, (schedule, response.status_code, response.text[:300])
        assert response.json()["details"]["parameter"] == field, response.json()
    job = api.post("/cron-jobs", {**base, "scheduleType": "cron", "scheduleCron": "0 9 * * *"}).json()["cronJob"]
    update = api.http.put(
        api.base + f"/cron-jobs/{job['_id']}", json={"scheduleCron": "0 0 30 2 *"}, headers=api._headers(None)
    )
    assert update.status_code == 400 and update.json()["details"]["parameter"] == "scheduleCron"


def test_trigger_runs_on_its_interval_delivers_and_pauses_after_failures(api: Api, pages: str) -> None:
    receiver = Receiver([])
    secret = api.get("/webhooks/secret").json()["secret"]
    environment_id = create_environment(api)
    created = api.post(
        "/cron-jobs",
        {
            "name": "title watch",
            "environmentId": environment_id,
            "scheduleType": "every",
            "scheduleInterval": "2s",
            "prompt": f"go to {pages}/hello.html then extract the title",
            "maxConsecutiveFailures": 2,
            "webhook": {"url": receiver.url, "submittedData": "full_response", "auth": "Bearer t"},
        },
    )
    assert created.status_code == 201, created.text
    job = created.json()["cronJob"]
    assert job["webhook"]["auth"] == "***"
    assert triggers_run_due(now=timezone.now()) == []  # not due yet
    time.sleep(2.1)
    assert len(triggers_run_due()) == 1
    runs = wait_run(api, job["_id"], 1)
    assert runs[0]["status"] == "completed" and runs[0]["result"].endswith("Hello page"), runs
    receiver.wait(1)
    delivered = receiver.requests[0]
    assert verify(secret, delivered["headers"]["Enigma-Signature"], delivered["body"])
    assert json.loads(delivered["body"])["taskId"] == runs[0]["taskId"]
    detail = api.get(f"/cron-jobs/{job['_id']}").json()
    assert detail["recentRuns"][0]["_id"] == runs[0]["_id"]
    assert detail["cronJob"]["nextRunAt"] > job["nextRunAt"]

    broken = api.http.put(
        api.base + f"/cron-jobs/{job['_id']}", json={"prompt": "dance wildly"}, headers=api._headers(None)
    )
    assert broken.status_code == 200
    for number in (2, 3):
        time.sleep(2.1)
        assert len(triggers_run_due()) == 1
        runs = wait_run(api, job["_id"], number)
        assert runs[0]["status"] == "failed" and runs[0]["code"] == "UNSUPPORTED_INSTRUCTION", runs
    job = api.get(f"/cron-jobs/{job['_id']}").json()["cronJob"]
    assert job["status"] == "paused" and job["consecutiveFailures"] == 2
    time.sleep(2.1)
    assert triggers_run_due() == []  # a paused trigger does not run
    page = api.get(f"/cron-jobs/{job['_id']}/runs?page=1&limit=2").json()
    assert page["pagination"] == {"page": 1, "limit": 2, "total": 3, "totalPages": 2}
    resumed = api.post(f"/cron-jobs/{job['_id']}/resume").json()["cronJob"]
    assert resumed["status"] == "active" and resumed["consecutiveFailures"] == 0
    assert api.post(f"/cron-jobs/{job['_id']}/trigger").json()["message"] == (
        "Job triggered. Check runs endpoint for results."
    )
    assert wait_run(api, job["_id"], 4)[0]["manual"] is True
    receiver.httpd.shutdown()
