"""Who may open a session's socket, and what a socket may do with what it presented (sync: call
through `socket_db`).

- An API key of the session's team: everything send-message allows.
- A viewer token: watch; interaction messages (click, type, take over) only if it grants control.
  The session id is never shown to it (it may be embedded in someone else's page).
- The session id alone (the contract's `auth: {sessionId}`): watch (events, frames), nothing
  else. The id travels far (client code, logs, URLs); it must not be able to spend the owner's
  money or drive the browser. Seed 003's example only listens on such a socket.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from channels.db import database_sync_to_async

from accounts.authentication import authenticate_raw_key
from enigma_site.errors import ApiError
from enigma_site.ratelimit import RateLimited, rate_limit_hit

from ..models import BrowserSession, SessionEvent
from ..schema import parse_message
from ..selectors import SessionNotFound
from ..services import session_ended_error, session_message
from ..streaming import viewer_token_read

T = TypeVar("T")


def socket_db(func: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    """`func` (sync, using the database) as a coroutine for a socket's handler, on the loop's
    thread pool. Channels' default runs every socket's database step of the process on one
    thread: a message whose write waited on a lock held up every other socket's connect, and
    with it the live events it should have been getting."""
    return database_sync_to_async(func, thread_sensitive=False)


class ViewerReadOnly(ApiError):
    status_code = 403
    code = "VIEWER_READ_ONLY"
    default_message = "This viewer link is read-only: it cannot control the browser"


class ViewerMessageNotAllowed(ApiError):
    status_code = 403
    code = "VIEWER_MESSAGE_NOT_ALLOWED"
    default_message = "A viewer can only send interaction messages"


class ApiKeyRequired(ApiError):
    status_code = 403
    code = "API_KEY_REQUIRED"
    default_message = (
        "A socket opened with the session id alone can only watch: "
        "connect with auth {sessionId, apiKey} to send messages"
    )


class InvalidViewerToken(ApiError):
    status_code = 403
    code = "INVALID_VIEWER_TOKEN"
    default_message = "This viewer link is invalid or has expired"


@dataclass(frozen=True)
class SocketGrant:
    """What one socket may do: `kind` is "key", "viewer" or "session_id"."""

    session: BrowserSession
    kind: str
    control: bool
    last_event_id: int  # the log's last event when the grant was checked

    @property
    def session_id(self) -> str:
        return str(self.session.pk)

    @property
    def hides_session_id(self) -> bool:
        return self.kind == "viewer"

    def check_message(self, action_type: str) -> None:
        """Raise unless this socket may send a message of `action_type`."""
        if self.kind == "key":
            return
        if self.kind == "session_id":
            raise ApiKeyRequired()
        if not self.control:
            raise ViewerReadOnly()
        if action_type != "interaction":
            raise ViewerMessageNotAllowed()


def _last_event_id(session_id: str) -> int:
    last = SessionEvent.objects.filter(session_id=session_id).order_by("-id").values_list("id", flat=True).first()
    return int(last or 0)


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


def viewer_grant_read(token: Any) -> tuple[BrowserSession, bool]:
    """Return (session, control) of a viewer token, or raise INVALID_VIEWER_TOKEN. The session
    may have ended: a viewer then shows why."""
    grant = viewer_token_read(token) if isinstance(token, str) and token else None
    session = BrowserSession.objects.filter(pk=grant.session_id).first() if grant else None
    if grant is None or session is None:
        raise InvalidViewerToken()
    return session, grant.control


def socket_session_authorize(auth: Any) -> SocketGrant:
    """Return the grant of a Socket.IO handshake `auth` ({token} | {sessionId[, apiKey]}) for a
    live session, or raise. With an `apiKey` the key must be valid and its team must own the
    session (else SESSION_NOT_FOUND, never revealing that the id exists)."""
    if isinstance(auth, dict) and auth.get("token") is not None:
        session, control = viewer_grant_read(auth["token"])
        if not session.is_live:
            ended = session_ended_error(session)
            ended.message = without_session_id(ended.message, session.pk)
            raise ended
        return SocketGrant(session=session, kind="viewer", control=control, last_event_id=_last_event_id(session.pk))
    if not isinstance(auth, dict) or not isinstance(auth.get("sessionId"), str) or not auth["sessionId"]:
        raise SessionNotFound("Missing sessionId in the handshake auth", code="MISSING_SESSION_ID")
    api_key = auth.get("apiKey")
    if api_key is None:
        session = _live_session(auth["sessionId"])
        return SocketGrant(session=session, kind="session_id", control=False, last_event_id=_last_event_id(session.pk))
    if not isinstance(api_key, str):
        raise SessionNotFound("Invalid apiKey in the handshake auth", code="INVALID_API_KEY")
    session = _live_session(auth["sessionId"], authenticate_raw_key(api_key).team.pk)
    return SocketGrant(session=session, kind="key", control=True, last_event_id=_last_event_id(session.pk))


def _rate_limit(team_id: int) -> None:
    """Socket messages share the team's send-message budget with REST (api.md §6.3 scope)."""
    decision = rate_limit_hit(team_id=team_id, scope="send-message")
    if decision is not None and not decision.allowed:
        raise RateLimited(details={"limit": decision.limit, "retryAfter": decision.retry_after})


def socket_message_apply(*, grant: SocketGrant, raw: Any) -> dict[str, Any]:
    """Apply a client's `emit("message", m)` as POST /start/send-message would, within what the
    socket's grant allows; return the acknowledgement body or raise ApiError."""
    if grant.kind == "session_id":
        raise ApiKeyRequired()  # before parsing: a watcher learns nothing from sending
    _rate_limit(grant.session.team_id)
    message = parse_message(raw)
    grant.check_message(message.action_type)
    session = BrowserSession.objects.select_related("team").filter(pk=grant.session_id).first()
    if session is None:
        raise SessionNotFound("This session does not exist or has expired")
    task = session_message(session=session, message=message)
    if task is not None:
        return {"success": True, "sessionId": grant.session_id, "taskId": task.pk}
    return {"success": True, "message": "Message sent successfully"}


def viewer_message_apply(*, session_id: str, control: bool, raw: Any) -> None:
    """Apply an interaction sent by a viewer page's websocket; read-only viewers are refused."""
    if not control:
        raise ViewerReadOnly()
    message = parse_message(raw)
    if message.action_type != "interaction":
        raise ViewerMessageNotAllowed()
    session = BrowserSession.objects.select_related("team").filter(pk=session_id).first()
    if session is None:
        raise SessionNotFound("This session does not exist or has expired")
    session_message(session=session, message=message)


def without_session_id(value: Any, session_id: str) -> Any:
    """`value` with every `sessionId` field dropped and the id blanked out of every string:
    what a viewer is sent."""
    if isinstance(value, dict):
        return {k: without_session_id(v, session_id) for k, v in value.items() if k not in ("sessionId", "session_id")}
    if isinstance(value, list):
        return [without_session_id(v, session_id) for v in value]
    if isinstance(value, str) and session_id in value:
        return value.replace(session_id, "…")
    return value


def error_payload(exc: ApiError) -> dict[str, Any]:
    return {"type": "error", "error": exc.message, "code": exc.code, "details": exc.details}
