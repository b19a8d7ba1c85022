"""Encode a recording's frames to an MP4 (H.264, 1024x600, variable frame rate).

Frames are kept at the times they were captured (millisecond timestamps): an idle page is one
frame held for as long as it stays idle, so a quiet minute costs almost nothing. The first frame
is shown from 0 and the last one until the end, so the file lasts as long as the session did. A
keyframe at least every few seconds keeps seeking to a step precise.
"""

from __future__ import annotations

import fractions
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import av

from .compose import HEIGHT, WIDTH, FrameComposer, FrameError
from .spool import SpoolFrame

_TIME_BASE = fractions.Fraction(1, 1000)
KEYFRAME_EVERY_MS = 4000


@dataclass(frozen=True)
class EncodeResult:
    duration_ms: int
    frames: int
    size_bytes: int


def encode_mp4(
    frames: Iterable[SpoolFrame],
    *,
    end_ms: int,
    path: Path,
    status: str = "Recorded",
    crf: int = 30,
    preset: str = "veryfast",
) -> EncodeResult:
    """Write `frames` (in time order) to `path` as an MP4 lasting `end_ms`; return its figures."""
    composer = FrameComposer()
    path.parent.mkdir(parents=True, exist_ok=True)
    container = av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"})
    written = 0
    try:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.time_base = _TIME_BASE
        stream.codec_context.time_base = _TIME_BASE
        stream.options = {"crf": str(crf), "preset": preset, "threads": "1"}
        last_pts, last_key, last = -1, -KEYFRAME_EVERY_MS, None

        def put(frame: av.VideoFrame, pts: int) -> None:
            nonlocal last_pts, last_key, written
            frame.pts, frame.time_base = pts, _TIME_BASE
            if pts - last_key >= KEYFRAME_EVERY_MS:
                frame.pict_type = av.video.frame.PictureType.I
                last_key = pts
            else:
                frame.pict_type = av.video.frame.PictureType.NONE
            container.mux(stream.encode(frame))
            last_pts = pts
            written += 1

        for item in frames:
            pts = max(0, min(int(item.t_ms), end_ms))
            if pts <= last_pts:
                continue  # two frames in one millisecond, or one past the end: keep the first
            try:
                frame = composer.frame(item.jpeg, url=item.url, title=item.title, status=status)
            except FrameError:
                continue
            if last_pts < 0 and pts > 0:
                put(composer.frame(item.jpeg, url=item.url, title=item.title, status=status), 0)
            put(frame, pts)
            last = item
        if last_pts < 0:  # nothing was painted: a blank page for the whole time
            put(composer.frame(None, url="about:blank", title="", status=status), 0)
        if end_ms > last_pts:
            jpeg, url, title = (last.jpeg, last.url, last.title) if last else (None, "about:blank", "")
            put(composer.frame(jpeg, url=url, title=title, status=status), end_ms)
        container.mux(stream.encode(None))
    finally:
        container.close()
    return EncodeResult(duration_ms=max(end_ms, 0), frames=written, size_bytes=path.stat().st_size)
