"""GET /sessions/<id>/recording (the MP4, with Range) and GET /sessions/<id>/recording/steps.

Both take the API key of the session's team, or the signed link that the steps body (and the
dashboard) hands out: `?token=`, valid for an hour, so a <video> element can play it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from django.http import HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.exceptions import NotAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from enigma_site.api import ApiView, ok, public_base_url
from enigma_site.errors import ApiError
from environments import storage

from . import selectors
from .models import Recording
from .serializers import RecordingStepsSerializer

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_CHUNK = 256 * 1024


class RecordingNotReady(ApiError):
    status_code = 409
    code = "RECORDING_NOT_READY"
    default_message = "The recording is not ready yet"


def _recording(view: ApiView, request: Request, session_id: str) -> Recording:
    token = request.query_params.get("token")
    if token:
        return selectors.recording_by_link(session_id=session_id, token=token)
    if request.user is None:
        raise NotAuthenticated()
    return selectors.recording_get(team=view.principal.team, session_id=session_id)


def _chunks(path: str, start: int, length: int) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        handle.seek(start)
        while length > 0:
            chunk = handle.read(min(_CHUNK, length))
            if not chunk:
                return
            length -= len(chunk)
            yield chunk


def _byte_range(header: str, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a single `Range: bytes=a-b` header; None when it cannot be served."""
    match = _RANGE.match(header.strip())
    if match is None or (not match[1] and not match[2]):
        return None
    if not match[1]:  # the last N bytes
        return max(0, size - int(match[2])), size - 1
    first = int(match[1])
    last = min(int(match[2]), size - 1) if match[2] else size - 1
    if first >= size or last < first:
        return None
    return first, last


class RecordingFileApi(ApiView):
    permission_classes: list[Any] = []  # the key, or the signed link (checked in _recording)

    @extend_schema(responses={(200, "video/mp4"): OpenApiResponse(OpenApiTypes.BINARY, description="the video")})
    def get(self, request: Request, session_id: str) -> HttpResponseBase:
        recording = _recording(self, request, session_id)
        if recording.state != Recording.State.READY:
            raise RecordingNotReady(details={"state": recording.state})
        path = str(storage.absolute(recording.blob))
        size = storage.file_size(recording.blob)
        if size is None:
            raise selectors.RecordingNotFound("The recording's file is gone")
        header = request.META.get("HTTP_RANGE", "")
        byte_range = _byte_range(header, size) if header else (0, size - 1)
        response: HttpResponseBase
        if byte_range is None:
            response = HttpResponse(status=416)
            response["Content-Range"] = f"bytes */{size}"
            return response
        first, last = byte_range
        response = StreamingHttpResponse(
            _chunks(path, first, last - first + 1), content_type="video/mp4", status=206 if header else 200
        )
        response["Content-Length"] = str(last - first + 1)
        response["Accept-Ranges"] = "bytes"
        if header:
            response["Content-Range"] = f"bytes {first}-{last}/{size}"
        response["Content-Disposition"] = f'inline; filename="session-{recording.session_id}.mp4"'
        response["Cache-Control"] = "private, max-age=3600"
        return response


class RecordingStepsApi(ApiView):
    permission_classes: list[Any] = []

    @extend_schema(responses={200: RecordingStepsSerializer})
    def get(self, request: Request, session_id: str) -> Response:
        recording = _recording(self, request, session_id)
        return ok(
            sessionId=recording.session_id,
            recording=selectors.recording_body(recording, base_url=public_base_url(request)),
            steps=selectors.recording_steps(recording=recording),
        )
