"""WHEP endpoints (api.md §5.10): `POST /whep/<token>` with an SDP offer answers 201 with the SDP
answer and a `Location` (`/whep/<token>/<resource>`) whose `DELETE` ends the stream.

The token is a viewer token (sessions_app/streaming.py): opaque, expiring, naming one session.
The stream is receive-only whatever the token grants; control goes over the socket. A player on
another origin may post the offer (CORS, the token in the URL is the only credential).
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from enigma_site.errors import ApiError, error_body
from sessions_app.realtime.access import viewer_grant_read
from sessions_app.services import session_ended_error
from sessions_app.streaming import viewer_token_read

from .whep import WhepError, whep_answer, whep_close

MAX_OFFER_BYTES = 64 * 1024


def _cors(response: HttpResponse) -> HttpResponse:
    response["Access-Control-Allow-Origin"] = "*"
    response["Access-Control-Allow-Methods"] = "POST, DELETE, OPTIONS"
    response["Access-Control-Allow-Headers"] = "Content-Type"
    response["Access-Control-Expose-Headers"] = "Location"
    return response


def _error(exc: ApiError) -> HttpResponse:
    return _cors(JsonResponse(error_body(exc.status_code, exc.code, exc.message, exc.details), status=exc.status_code))


def _grant(token: str) -> tuple[Any, float]:
    """(live session, token expiry) of a viewer token, or raise the error to answer."""
    session, _control = viewer_grant_read(token)
    if not session.is_live:
        raise session_ended_error(session)
    grant = viewer_token_read(token)
    if grant is None:  # expired between the two reads
        raise ApiError("This viewer link is invalid or has expired", code="INVALID_VIEWER_TOKEN", status_code=403)
    return session, grant.expires_at


@csrf_exempt
async def whep_endpoint(request: HttpRequest, token: str) -> HttpResponse:
    if request.method == "OPTIONS":
        return _cors(HttpResponse(status=204))
    if request.method != "POST":
        return _error(ApiError("Use POST with an SDP offer", code="METHOD_NOT_ALLOWED", status_code=405))
    content_type = request.content_type or ""
    if content_type != "application/sdp":
        return _error(
            ApiError(
                "Content-Type must be application/sdp",
                code="UNSUPPORTED_MEDIA_TYPE",
                status_code=415,
                details={"parameter": "Content-Type"},
            )
        )
    try:
        session, expires_at = await database_sync_to_async(_grant)(token)
    except ApiError as exc:
        return _error(exc)
    body = request.body
    if len(body) > MAX_OFFER_BYTES or not body.startswith(b"v=0"):
        return _error(ApiError("The body must be an SDP offer", code="INVALID_SDP", details={"parameter": "body"}))
    try:
        answer, resource = await whep_answer(
            session_id=session.pk, offer_sdp=body.decode("utf-8", "replace"), expires_at=expires_at
        )
    except WhepError as exc:
        return _error(ApiError(str(exc), code="INVALID_SDP", details={"parameter": "body"}))
    response = HttpResponse(answer, status=201, content_type="application/sdp")
    response["Location"] = f"/whep/{token}/{resource}"
    response["Cache-Control"] = "no-store"
    return _cors(response)


@csrf_exempt
async def whep_resource(request: HttpRequest, token: str, resource: str) -> HttpResponse:
    if request.method == "OPTIONS":
        return _cors(HttpResponse(status=204))
    if request.method != "DELETE":
        # No trickle ICE (PATCH): the client sends its offer after gathering, as §5.10 says.
        return _error(ApiError("Only DELETE ends a WHEP session", code="METHOD_NOT_ALLOWED", status_code=405))
    grant = viewer_token_read(token) if token else None
    if grant is None:
        return _error(
            ApiError("This viewer link is invalid or has expired", code="INVALID_VIEWER_TOKEN", status_code=403)
        )
    if not await whep_close(session_id=grant.session_id, resource=resource):
        return _error(ApiError("No such WHEP session", code="WHEP_SESSION_NOT_FOUND", status_code=404))
    return _cors(HttpResponse(status=200))
