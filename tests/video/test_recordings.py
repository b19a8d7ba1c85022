"""Recordings end to end: a real worker records a session that runs two tasks, encodes the MP4
when it ends, and the API serves it (key or signed link, Range) with its steps."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from tests.conftest import Api

pytestmark = pytest.mark.slow


def _ready(api: Api, session_id: str, timeout: float = 30) -> tuple[dict[str, Any], float]:
    """The steps body once the recording is ready, and how long that took."""
    started = time.monotonic()
    body: dict[str, Any] = {}
    while time.monotonic() - started < timeout:
        body = api.get(f"/sessions/{session_id}/recording/steps").json()
        if body.get("recording", {}).get("state") == "ready":
            return body, time.monotonic() - started
        time.sleep(0.25)
    raise AssertionError(f"recording of {session_id} not ready: {body}")


def _ffprobe(path: Path) -> dict[str, Any]:
    ffprobe = shutil.which("ffprobe")
    if ffprobe is None:
        pytest.fail("ffprobe (Debian's ffmpeg, installed by scripts/install.sh) is needed")
    done = subprocess.run(
        [ffprobe, "-v", "error", "-print_format", "json", "-show_streams", "-show_format", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


def test_a_session_with_two_tasks_has_a_recording_with_both_tasks_steps(
    api: Api, pages: str, tmp_path: Path, server: str
) -> None:
    started = api.post("/start/start-session", {"taskDetails": f"go to {pages}/hello.html then extract the headings"})
    assert started.status_code == 200, started.text
    session_id, first = started.json()["sessionId"], started.json()["taskId"]
    assert api.wait_task(session_id, first)["type"] == "task_completed"
    second = api.message(
        session_id, {"actionType": "newTask", "taskDetails": f"go to {pages}/animated.html then wait 2 seconds"}
    ).json()
    assert api.wait_task(session_id, second["taskId"])["type"] == "task_completed"
    api.message(session_id, {"actionType": "state", "newState": "terminate"})
    session = api.wait_session(session_id, "terminated")

    body, waited = _ready(api, session_id)
    assert waited < 30
    recording, steps = body["recording"], body["steps"]
    length = (datetime.fromisoformat(session["endedAt"]) - datetime.fromisoformat(session["startedAt"])).total_seconds()
    assert abs(recording["durationMs"] / 1000 - length) < 2, (recording, length)
    # Both tasks' events, in order, each with its time in the video.
    kinds = [(s["type"], s.get("taskId")) for s in steps]
    assert (
        kinds.index(("task_started", first))
        < kinds.index(("task_completed", first))
        < kinds.index(("task_started", second["taskId"]))
        < kinds.index(("task_completed", second["taskId"]))
    )
    assert [s["t"] for s in steps] == sorted(s["t"] for s in steps)
    assert all(0 <= s["t"] <= length + 1 for s in steps)
    assert set(steps[0]) >= {"t", "eventId", "type", "name", "target", "thought"}
    actions = [s for s in steps if s["type"] == "action"]
    assert any(s["name"] and s["target"] and f"{pages}/animated.html" in s["target"] for s in actions), actions

    # The MP4 with the key: H.264 1024x600, as long as the session.
    response = api.get(f"/sessions/{session_id}/recording")
    assert response.status_code == 200 and response.headers["Content-Type"] == "video/mp4"
    assert response.headers["Accept-Ranges"] == "bytes"
    (tmp_path / "rec.mp4").write_bytes(response.content)
    probe = _ffprobe(tmp_path / "rec.mp4")
    video = probe["streams"][0]
    assert (video["codec_name"], video["width"], video["height"]) == ("h264", 1024, 600)
    assert abs(float(probe["format"]["duration"]) - length) < 2
    size = len(response.content)
    assert size == recording["sizeBytes"]

    # Range requests (what a player sends to seek), and the signed link without a key.
    part = api.get(f"/sessions/{session_id}/recording", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == response.content[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{size}"
    assert api.get(f"/sessions/{session_id}/recording", headers={"Range": f"bytes={size}-"}).status_code == 416
    anonymous = Api(server, None)
    linked = anonymous.get(recording["url"].removeprefix(server), headers={"Range": "bytes=0-"})
    assert linked.status_code == 206 and linked.content == response.content
    refused = anonymous.get(f"/sessions/{session_id}/recording?token=forged")
    assert refused.status_code == 403 and refused.json()["code"] == "INVALID_TOKEN"
    assert anonymous.get(f"/sessions/{session_id}/recording").status_code == 401

    # Another team sees nothing, not even that the session exists.
    from accounts.services import api_key_create, personal_team, user_create

    other = user_create(email=f"other{time.time_ns()}@example.com", password="pw-123456789")
    other_key = api_key_create(team=personal_team(other), user=other, name="other").raw
    stranger = Api(server, other_key)
    for path in (f"/sessions/{session_id}/recording", f"/sessions/{session_id}/recording/steps"):
        answer = stranger.get(path)
        assert answer.status_code == 404 and answer.json()["code"] == "SESSION_NOT_FOUND", answer.text


def test_a_session_started_with_recording_false_has_none(api: Api, pages: str) -> None:
    started = api.post("/start/start-session", {"startingUrl": f"{pages}/animated.html", "recording": False})
    assert started.status_code == 200, started.text
    session_id = started.json()["sessionId"]
    api.wait_session(session_id, "active")
    time.sleep(1)  # an animated page paints all the time: frames would be spooled if it were recorded
    api.message(session_id, {"actionType": "state", "newState": "terminate"})
    api.wait_session(session_id, "terminated")
    answer = api.get(f"/sessions/{session_id}/recording/steps")
    assert answer.status_code == 404 and answer.json()["code"] == "RECORDING_NOT_FOUND"
    assert api.get(f"/sessions/{session_id}/recording").status_code == 404
    bad = api.post("/start/start-session", {"recording": "no"})
    assert bad.status_code == 400 and bad.json()["details"]["parameter"] == "recording"


def test_old_recordings_are_deleted_with_their_files(account: dict[str, Any], tmp_path: Path) -> None:
    from environments import storage
    from recordings.models import Recording
    from recordings.services import recordings_delete_expired
    from sessions_app.models import BrowserSession

    now = timezone.now()
    kept, old = (
        BrowserSession.objects.create(team=account["team"], state="terminated", ended_at=now - age)
        for age in (timedelta(days=1), timedelta(days=40))
    )
    for session in (kept, old):
        relative = f"recordings/{session.pk}.mp4"
        source = tmp_path / f"{session.pk}.mp4"
        source.write_bytes(b"mp4")
        storage.file_move_in(relative, str(source))
        assert session.ended_at is not None
        Recording.objects.create(
            session=session,
            team=account["team"],
            state="ready",
            blob=relative,
            started_at=session.ended_at,
            ended_at=session.ended_at,
            ready_at=session.ended_at,
        )
    assert recordings_delete_expired(now=now) == 1
    assert list(Recording.objects.values_list("session_id", flat=True)) == [kept.pk]
    assert storage.file_exists(f"recordings/{kept.pk}.mp4")
    assert not storage.file_exists(f"recordings/{old.pk}.mp4")


def _spool_frames(session_id: str, times_ms: tuple[int, ...]) -> Path:
    import io

    from PIL import Image

    from recordings.services import spool_path
    from video.spool import Spool

    spool = Spool(spool_path(session_id))
    for i, t_ms in enumerate(times_ms):
        out = io.BytesIO()
        Image.new("RGB", (1024, 445), (40 * i % 256, 120, 200)).save(out, "JPEG")
        spool.append(t_ms=t_ms, jpeg=out.getvalue(), url="https://example.com/", title="Example")
    spool.close()
    return spool.path


def test_a_session_the_sweep_ends_after_its_worker_died_is_encoded_on_its_host(
    api: Api, account: dict[str, Any]
) -> None:
    """What a worker killed mid-session leaves: the session orphaned past its grace, its spool on
    this host, the recording "recording". The sweep ends it; this host's worker encodes it, and
    removes a leftover spool of a recording that is already ready."""
    import os

    from recordings.models import Recording
    from sessions_app.models import BrowserSession
    from sessions_app.registry import host_id

    now = timezone.now()
    started = now - timedelta(seconds=90)
    session = BrowserSession.objects.create(
        team=account["team"],
        state=BrowserSession.State.ORPHANED,
        started_at=started,
        heartbeat_at=now - timedelta(seconds=75),
        orphaned_at=now - timedelta(seconds=70),
        worker_id=f"{host_id()}:1:dead",
    )
    Recording.objects.create(session=session, team=account["team"], started_at=started)
    spool = _spool_frames(session.pk, (0, 2000, 5000))
    done = BrowserSession.objects.create(team=account["team"], state="terminated", ended_at=now)
    Recording.objects.create(session=done, team=account["team"], state="ready", started_at=now, ended_at=now)
    leftover = _spool_frames(done.pk, (0,))
    os.utime(leftover, (time.time() - 120, time.time() - 120))

    body, _ = _ready(api, session.pk, timeout=45)
    session.refresh_from_db()
    assert (session.state, session.end_reason) == ("failed", "instance_lost")
    assert session.ended_at is not None
    length = (session.ended_at - started).total_seconds()
    assert abs(body["recording"]["durationMs"] / 1000 - length) < 2
    assert body["recording"]["frames"] >= 3
    assert api.get(f"/sessions/{session.pk}/recording").headers["Content-Type"] == "video/mp4"
    assert not spool.exists() and not leftover.exists()


def test_a_recording_whose_host_never_settled_it_fails_and_is_then_deleted(account: dict[str, Any]) -> None:
    from recordings.models import Recording
    from recordings.services import recordings_delete_expired
    from sessions_app.models import BrowserSession

    now = timezone.now()
    lost, recent = (
        BrowserSession.objects.create(team=account["team"], state="failed", ended_at=now - age)
        for age in (timedelta(hours=2), timedelta(minutes=1))
    )
    for session in (lost, recent):
        assert session.ended_at is not None
        Recording.objects.create(session=session, team=account["team"], started_at=session.ended_at)
    recordings_delete_expired(now=now)
    states = dict(Recording.objects.values_list("session_id", "state"))
    assert states == {lost.pk: "failed", recent.pk: "recording"}
    assert "frames" in Recording.objects.get(pk=lost.pk).error
    # Retention takes both in time (the recent one fails first, an hour after its end).
    assert recordings_delete_expired(now=now + timedelta(days=31)) == 2
    assert not Recording.objects.filter(session__in=(lost, recent)).exists()


def test_a_recording_whose_session_is_deleted_while_it_encodes_leaves_no_file(
    account: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An operator deletes the session (and with it its recording row) in the admin while the
    encoder runs: the encode ends quietly and the MP4 it produced does not stay in storage."""
    from environments import storage
    from recordings import services
    from recordings.models import Recording
    from sessions_app.models import BrowserSession

    team = account["team"]
    now = timezone.now()
    started = now - timedelta(seconds=3)
    session = BrowserSession.objects.create(
        team=team, state=BrowserSession.State.TERMINATED, started_at=started, ended_at=now
    )
    Recording.objects.create(session=session, team=team, started_at=started)
    _spool_frames(session.pk, (0, 1000))
    move_in = storage.file_move_in

    def move_in_after_the_session_is_gone(relative: str, source: str) -> int:
        BrowserSession.objects.filter(pk=session.pk).delete()  # the race, made certain
        return move_in(relative, source)

    monkeypatch.setattr(services.storage, "file_move_in", move_in_after_the_session_is_gone)
    assert services.recording_encode(session_id=session.pk) is None
    assert not storage.file_exists(services.blob_relative(session.pk))
    assert not Recording.objects.filter(pk=session.pk).exists()
