"""Writes of recordings: start one for a session, encode it when the session ends, delete old ones."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from pathlib import Path

import av
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from environments import storage
from sessions_app.models import BrowserSession
from video.mp4 import encode_mp4
from video.spool import Spool

from .models import Recording

logger = logging.getLogger(__name__)

STUCK_ENCODING = timedelta(hours=1)
# A recording still "recording" this long after its session ended was never encoded: its frames
# were on a browser host that is gone (or never came back to settle it).
LOST_SPOOL = timedelta(hours=1)
# A spool directory no recording waits for is removed once it is this old (a session that is
# just starting writes its row before its first frame).
SPOOL_PRUNE_AGE_S = 60.0


def recording_wanted(session: BrowserSession) -> bool:
    """Sessions are recorded unless ENIGMA_RECORDINGS is off or the session said `recording: false`."""
    return bool(settings.ENIGMA_RECORDINGS) and session.config.get("recording", True) is not False


def spool_path(session_id: str) -> Path:
    return Path(settings.VAR_DIR) / "recordings" / session_id


def blob_relative(session_id: str) -> str:
    return f"recordings/{session_id}.mp4"


def recording_start(*, session: BrowserSession) -> Recording | None:
    """The session's recording (made on its first start, found again after a takeover), or None
    when the session is not recorded."""
    if not recording_wanted(session):
        return None
    started_at = BrowserSession.objects.filter(pk=session.pk).values_list("started_at", flat=True).first()
    recording, _ = Recording.objects.get_or_create(
        session_id=session.pk,
        defaults={"team_id": session.team_id, "started_at": started_at or timezone.now()},
    )
    return recording


def recording_encode(*, session_id: str) -> Recording | None:
    """Encode the spool of an ended session into the MP4 and store it; a second call (or one for
    a recording that is not waiting) does nothing. Returns the recording."""
    session = BrowserSession.objects.filter(pk=session_id).first()
    if session is None or session.is_live:
        return None
    ended_at = session.ended_at or timezone.now()
    claimed = Recording.objects.filter(session_id=session_id, state=Recording.State.RECORDING).update(
        state=Recording.State.ENCODING, ended_at=ended_at
    )
    if claimed != 1:
        return None
    recording = Recording.objects.get(session_id=session_id)
    spool = Spool(spool_path(session_id))
    end_ms = max(0, int((ended_at - recording.started_at).total_seconds() * 1000))
    started = time.monotonic()
    out = storage.temp_dir() / f"recording-{session_id}.mp4"
    try:
        result = encode_mp4(spool.read(), end_ms=end_ms, path=out)
        relative = blob_relative(session_id)
        size = storage.file_move_in(relative, str(out))
    except (av.FFmpegError, OSError) as exc:
        out.unlink(missing_ok=True)
        logger.warning("recording of session %s failed to encode: %s", session_id, exc)
        Recording.objects.filter(pk=session_id).update(state=Recording.State.FAILED, error=str(exc)[:1000])
        return Recording.objects.filter(pk=session_id).first()
    updated = Recording.objects.filter(pk=session_id).update(
        state=Recording.State.READY,
        blob=relative,
        duration_ms=result.duration_ms,
        frames=result.frames,
        size_bytes=size,
        encode_ms=int((time.monotonic() - started) * 1000),
        ready_at=timezone.now(),
    )
    spool.remove()
    if not updated:  # the session (and its recording) was deleted while this encoded
        storage.file_remove(relative)
        return None
    return Recording.objects.filter(pk=session_id).first()


def recording_settle(*, session_id: str) -> Recording | None:
    """Run on the browser host that last held the session, for a session whose end its runner
    never saw (the sweep ended it after its worker died): encode the spool this host has, or fail
    the recording when it has none. Then remove this host's spools that no recording waits for.
    Returns the recording, or None when there is nothing to settle."""
    recording = Recording.objects.filter(session_id=session_id, state=Recording.State.RECORDING).first()
    result = None
    if (
        recording is not None
        and not BrowserSession.objects.filter(pk=session_id, state__in=BrowserSession.LIVE_STATES).exists()
    ):
        if Spool(spool_path(session_id)).index_path.exists():
            result = recording_encode(session_id=session_id)
        elif Recording.objects.filter(pk=session_id, state=Recording.State.RECORDING).update(
            state=Recording.State.FAILED,
            ended_at=timezone.now(),
            error=f"no frames of this session on host {settings.ENIGMA_HOST_ID}",
        ):
            result = Recording.objects.get(pk=session_id)
    spools_prune()
    return result


def spools_prune() -> int:
    """Remove the spools on this host that no recording waits for: the recording is ready,
    failed or gone (e.g. a spool a host kept after another host took its session over).
    Returns how many were removed."""
    root = Path(settings.VAR_DIR) / "recordings"
    if not root.is_dir():
        return 0
    old_enough = time.time() - SPOOL_PRUNE_AGE_S
    candidates = {p.name: p for p in root.iterdir() if p.is_dir() and p.stat().st_mtime < old_enough}
    waiting = set(
        Recording.objects.filter(
            session_id__in=list(candidates),
            state__in=(Recording.State.RECORDING, Recording.State.ENCODING),
        ).values_list("session_id", flat=True)
    )
    removed = 0
    for session_id, path in candidates.items():
        if session_id not in waiting:
            Spool(path).remove()
            removed += 1
    return removed


def recordings_delete_expired(*, now: datetime | None = None) -> int:
    """Delete recordings older than ENIGMA_RECORDING_RETENTION_DAYS (file and row), and fail
    encodings a dead worker left behind and recordings whose host never settled them (so no row
    stays "recording" forever; retention then deletes them). Returns how many were deleted."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.ENIGMA_RECORDING_RETENTION_DAYS)
    Recording.objects.filter(state=Recording.State.ENCODING, ended_at__lt=now - STUCK_ENCODING).update(
        state=Recording.State.FAILED, error="the worker encoding it stopped"
    )
    lost = Recording.objects.filter(state=Recording.State.RECORDING, session__ended_at__lt=now - LOST_SPOOL)
    for recording in lost.select_related("session"):
        Recording.objects.filter(pk=recording.pk, state=Recording.State.RECORDING).update(
            state=Recording.State.FAILED,
            ended_at=recording.session.ended_at,
            error="its session ended without its browser host, which had the frames, encoding them",
        )
    deleted = 0
    for recording in Recording.objects.filter(ended_at__lt=cutoff).exclude(state=Recording.State.RECORDING):
        if recording.blob:
            storage.file_remove(recording.blob)
        with transaction.atomic():
            deleted += Recording.objects.filter(pk=recording.pk).delete()[0]
    return deleted
