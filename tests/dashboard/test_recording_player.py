"""The session page plays the session's recording with its steps beside it: signed links minted
for the logged-in member (the dashboard has no API key), the MP4 served with Range, a step click
seeks the video."""

from __future__ import annotations

import html
import io
import re
from datetime import timedelta
from typing import Any

import pytest
import requests
from django.utils import timezone
from PIL import Image

from tests.dashboard.conftest import PASSWORD, login_client, orm, unique_email

STEP_TIMES = (1.0, 4.5, 8.0)


def _jpeg(color: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (1024, 445), color).save(out, "JPEG", quality=60)
    return out.getvalue()


def _recorded_session(team: Any) -> str:
    """An ended session of `team` with three steps and its MP4 encoded from a real spool."""
    from recordings.models import Recording
    from recordings.services import recording_encode, spool_path
    from sessions_app.models import BrowserSession, SessionEvent
    from video.spool import Spool

    now = timezone.now()
    started = now - timedelta(seconds=10)
    session = BrowserSession.objects.create(
        team=team, state=BrowserSession.State.TERMINATED, started_at=started, ended_at=now, end_reason="terminated"
    )
    Recording.objects.create(session=session, team=team, started_at=started)
    spool = Spool(spool_path(session.pk))
    for t_ms, color in ((0, (200, 30, 30)), (4000, (30, 200, 30)), (7500, (30, 30, 200))):
        spool.append(t_ms=t_ms, jpeg=_jpeg(color), url="https://example.com/", title="Example")
    spool.close()
    for t, (name, target) in zip(
        STEP_TIMES, (("GOTO", "https://example.com/"), ("CLICK", "More"), ("EXTRACT", "title")), strict=True
    ):
        event = SessionEvent.objects.create(
            session=session,
            name="message",
            type="action",
            payload={"type": "action", "data": {"name": name, "target": target}},
        )
        SessionEvent.objects.filter(pk=event.pk).update(created_at=started + timedelta(seconds=t))
    recording = recording_encode(session_id=session.pk)
    assert recording is not None and recording.state == Recording.State.READY
    return session.pk


def _member(prefix: str) -> tuple[Any, Any]:
    from accounts.services import personal_team, user_create

    user = user_create(email=unique_email(prefix), password=PASSWORD)
    return user, personal_team(user)


def _player_links(page_html: str) -> tuple[str, str]:
    match = re.search(r'id="recording" data-src="([^"]+)" data-steps="([^"]+)"', page_html)
    assert match, "the session page has no recording player"
    return html.unescape(match.group(1)), html.unescape(match.group(2))


def test_session_page_links_its_recording_and_steps_for_the_member_only(server: str, transactional_db: Any) -> None:
    user, team = _member("rec")
    session_id = _recorded_session(team)
    client = login_client(server, user.email)
    page = client.get(f"{server}/app/sessions/{session_id}/", timeout=10)
    assert page.status_code == 200
    assert "media-src 'self'" in page.headers["Content-Security-Policy"]
    src, steps_url = _player_links(page.text)
    assert src.startswith(f"/sessions/{session_id}/recording?token=")

    # The links work without a key or a login (a <video> sends neither), and only for this session.
    anonymous = requests.Session()
    steps = anonymous.get(f"{server}{steps_url}", timeout=10).json()
    assert steps["recording"]["state"] == "ready"
    assert [(s["name"], s["t"]) for s in steps["steps"]] == [("GOTO", 1.0), ("CLICK", 4.5), ("EXTRACT", 8.0)]
    whole = anonymous.get(f"{server}{src}", timeout=10)
    assert whole.status_code == 200 and whole.headers["Content-Type"] == "video/mp4"
    part = anonymous.get(f"{server}{src}", headers={"Range": "bytes=0-99"}, timeout=10)
    assert part.status_code == 206 and part.content == whole.content[:100]
    token = src.split("token=", 1)[1]
    other_id = _recorded_session(team)
    refused = anonymous.get(f"{server}/sessions/{other_id}/recording?token={token}", timeout=10)
    assert refused.status_code == 403

    # Another team's member gets no page, so no link.
    stranger, _ = _member("stranger")
    other = login_client(server, stranger.email)
    assert other.get(f"{server}/app/sessions/{session_id}/", timeout=10).status_code == 404


def test_session_page_without_a_recording_has_no_player(server: str, transactional_db: Any) -> None:
    from sessions_app.models import BrowserSession

    user, team = _member("norec")
    session = BrowserSession.objects.create(
        team=team, state=BrowserSession.State.TERMINATED, ended_at=timezone.now(), config={"recording": False}
    )
    page = login_client(server, user.email).get(f"{server}/app/sessions/{session.pk}/", timeout=10)
    assert page.status_code == 200 and 'id="recording"' not in page.text


@pytest.mark.slow
def test_the_player_loads_the_video_and_a_step_click_seeks_it(page: Any, server: str, shoot: Any) -> None:
    user, team = orm(lambda: _member("player"))
    session_id = orm(lambda: _recorded_session(team))
    page.goto(f"{server}/login/")
    page.fill("#id_username", user.email)
    page.fill("#id_password", PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/app/"))
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(f"{server}/app/sessions/{session_id}/")
    page.wait_for_selector("#recording:not([hidden]) .rec-step")
    page.wait_for_function("() => document.getElementById('rec-video').readyState >= 1")
    video = page.evaluate(
        "() => { const v = document.getElementById('rec-video');"
        " return {w: v.videoWidth, h: v.videoHeight, d: v.duration}; }"
    )
    assert (video["w"], video["h"]) == (1024, 600) and abs(video["d"] - 10) < 1, video
    assert page.locator(".rec-step").count() == 3
    page.locator(".rec-step").nth(1).click()
    page.wait_for_function("() => Math.abs(document.getElementById('rec-video').currentTime - 4.5) < 0.05")
    page.wait_for_function("() => document.querySelector('.rec-step.current') !== null")
    assert page.locator(".rec-step.current").get_attribute("data-t") == "4.5"
    assert not [e for e in errors if "Content Security Policy" in e], errors
    shoot(page, "session-recording")
