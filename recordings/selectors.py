"""Reads of recordings, tenant first."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core import signing
from django.urls import reverse

from accounts.models import Team
from enigma_site.api import timestamp
from enigma_site.errors import ApiError
from sessions_app.events import events_after
from sessions_app.models import BrowserSession
from sessions_app.selectors import session_get

from .models import Recording
from .services import recording_wanted

LINK_SALT = "recordings.link"
LINK_TTL_S = 3600
_PAGE = 500


class RecordingNotFound(ApiError):
    status_code = 404
    code = "RECORDING_NOT_FOUND"
    default_message = "This session has no recording"


def recording_get(*, team: Team | int, session_id: str) -> Recording:
    """The recording of the team's session; SESSION_NOT_FOUND for another team's session,
    RECORDING_NOT_FOUND for a session that was not recorded."""
    session = session_get(team=team, session_id=session_id)
    recording = Recording.objects.filter(session_id=session.pk).first()
    if recording is None:
        raise RecordingNotFound()
    return recording


def recording_link_token(session_id: str) -> str:
    return signing.TimestampSigner(salt=LINK_SALT).sign(session_id)


def recording_by_link(*, session_id: str, token: str) -> Recording:
    """The recording a signed link opens, or raise (403 for a bad or expired link)."""
    try:
        signed = signing.TimestampSigner(salt=LINK_SALT).unsign(token, max_age=LINK_TTL_S)
    except signing.BadSignature as exc:
        raise ApiError("Recording link is invalid or has expired", code="INVALID_TOKEN", status_code=403) from exc
    if signed != session_id:
        raise ApiError("Recording link is invalid or has expired", code="INVALID_TOKEN", status_code=403)
    recording = Recording.objects.filter(session_id=session_id).first()
    if recording is None:
        raise RecordingNotFound()
    return recording


def _step(event: dict[str, Any], started_at: datetime) -> dict[str, Any]:
    data = event["data"] if isinstance(event["data"], dict) else {}
    kind = str(data.get("type") or event["name"])
    raw_inner = data.get("data")
    inner: dict[str, Any] = raw_inner if isinstance(raw_inner, dict) else {}
    t = (datetime.fromisoformat(event["createdAt"]) - started_at).total_seconds()
    step: dict[str, Any] = {
        "t": round(max(0.0, t), 3),
        "eventId": event["id"],
        "type": kind,
        "name": None,
        "target": None,
        "thought": None,
    }
    if kind == "action":
        step["name"], step["target"] = inner.get("name"), inner.get("target")
    elif kind == "agent":
        step["thought"] = data.get("content")
    elif kind == "response_update":
        step["thought"] = inner.get("message")
    elif kind in ("task_completed", "guardrail_trigger", "error"):
        step["name"] = kind
        step["thought"] = inner.get("message") or inner.get("value") or data.get("error")
    task_id = data.get("taskId") or inner.get("taskId")
    if task_id:
        step["taskId"] = task_id
    return step


def recording_steps(*, recording: Recording) -> list[dict[str, Any]]:
    """Every event of the session, in order, with its time in the video (seconds from its start)."""
    steps: list[dict[str, Any]] = []
    after = 0
    while True:
        page = events_after(session_id=recording.session_id, after=after, limit=_PAGE)
        steps.extend(_step(event, recording.started_at) for event in page)
        if len(page) < _PAGE:
            return steps
        after = page[-1]["id"]


def recording_body(recording: Recording, *, base_url: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "state": recording.state,
        "durationMs": recording.duration_ms,
        "sizeBytes": recording.size_bytes,
        "frames": recording.frames,
        "startedAt": timestamp(recording.started_at),
        "url": None,
    }
    if recording.state == Recording.State.READY:
        body["url"] = (
            f"{base_url}/sessions/{recording.session_id}/recording?token={recording_link_token(recording.session_id)}"
        )
        body["expiresIn"] = LINK_TTL_S
    return body


def recording_player_links(*, session: BrowserSession) -> dict[str, str] | None:
    """Signed links (valid LINK_TTL_S) to the session's MP4 and its steps, for a page whose viewer
    has no API key (the dashboard's player); None when the session is not and will not be
    recorded. The caller has checked that the viewer may see the session."""
    if not Recording.objects.filter(session_id=session.pk).exists() and not (
        session.is_live and recording_wanted(session)
    ):
        return None
    query = f"?token={recording_link_token(session.pk)}"
    return {
        "src": reverse("recording", args=[session.pk]) + query,
        "steps": reverse("recording-steps", args=[session.pk]) + query,
    }
