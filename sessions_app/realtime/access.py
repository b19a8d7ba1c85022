"""Who may open a session's socket, and what a socket may send (sync: call through
database_sync_to_async)."""

from __future__ import annotations

from typing import Any

from accounts.authentication import authenticate_raw_key
from enigma_site.errors import ApiError

from ..models import BrowserSession
from ..schema import parse_message
from ..services import SessionNotFound, session_ended_error, session_message
from ..streaming import viewer_token_read


class ViewerReadOnly(ApiError):
    status_code = 403
    code = "VIEWER_READ_ONLY"
    default_message = "This viewer link is read-only: it cannot control the browser"


class ViewerMessageNotAllowed(ApiError):
    status_code = 403
    code = "VIEWER_MESSAGE_NOT_ALLOWED"
    default_message = "A viewer can only send interaction messages"


def _live_session(session_id: str, team_id: int | None = None) -> BrowserSession:
    query = BrowserSession.objects.filter(pk=session_id[:64])
    if team_id is not None:
        query = query.filter(team_id=team_id)
    session = query.first()
    if session is None:
        raise SessionNotFound(f"Session {session_id} does not exist or has expired")
    if not session.is_live:
        raise session_ended_error(session)
    return session


def socket_session_authorize(auth: Any) -> BrowserSession:
    """Return the live session a Socket.IO handshake `auth` names, or raise.

    The session id alone is a capability (128 random bits); with an `apiKey` the key must be
    valid and its team must own the session (else SESSION_NOT_FOUND, never revealing that the id
    exists).
    """
    if not isinstance(auth, dict) or not isinstance(auth.get("sessionId"), str) or not auth["sessionId"]:
        raise SessionNotFound("Missing sessionId in the handshake auth", code="MISSING_SESSION_ID")
    team_id = None
    api_key = auth.get("apiKey")
    if api_key is not None:
        if not isinstance(api_key, str):
            raise SessionNotFound("Invalid apiKey in the handshake auth", code="INVALID_API_KEY")
        team_id = authenticate_raw_key(api_key).team.pk
    return _live_session(auth["sessionId"], team_id)


def socket_message_apply(*, session_id: str, raw: Any) -> dict[str, Any]:
    """Apply a client's `emit("message", m)` exactly as POST /start/send-message would;
    return the acknowledgement body or raise ApiError."""
    message = parse_message(raw)
    session = BrowserSession.objects.select_related("team").filter(pk=session_id).first()
    if session is None:
        raise SessionNotFound(f"Session {session_id} does not exist or has expired")
    task = session_message(session=session, message=message)
    if task is not None:
        return {"success": True, "sessionId": session_id, "taskId": task.pk}
    return {"success": True, "message": "Message sent successfully"}


def viewer_authorize(*, session_id: str, token: str) -> tuple[BrowserSession, bool]:
    """Return (session, control) for a viewer token of this session, or raise SESSION_NOT_FOUND.
    The session may have ended: the viewer then shows why."""
    grant = viewer_token_read(token) if token else None
    if grant is None or grant["session_id"] != session_id:
        raise SessionNotFound("This viewer link is invalid or has expired", code="INVALID_VIEWER_TOKEN",
                              status_code=403)
    session = BrowserSession.objects.filter(pk=session_id).first()
    if session is None:
        raise SessionNotFound(f"Session {session_id} does not exist or has expired")
    return session, grant["control"]


def viewer_message_apply(*, session_id: str, control: bool, raw: Any) -> None:
    """Apply an interaction sent by a viewer page; read-only viewers are refused."""
    if not control:
        raise ViewerReadOnly()
    message = parse_message(raw)
    if message.action_type != "interaction":
        raise ViewerMessageNotAllowed()
    session = BrowserSession.objects.select_related("team").filter(pk=session_id).first()
    if session is None:
        raise SessionNotFound(f"Session {session_id} does not exist or has expired")
    session_message(session=session, message=message)


def error_payload(exc: ApiError) -> dict[str, Any]:
    return {"type": "error", "error": exc.message, "code": exc.code, "details": exc.details}
