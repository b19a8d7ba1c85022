"""Viewer links for the live view (`streaming.webViewURL`): opaque, expiring tokens.

A viewer link is made to be embedded in other people's pages, so it carries nothing but a random
token: the session id, the team and the grant (watch, or watch and control) stay in Redis under
a hash of the token, and expire with it.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass

from enigma_site.redis import get_redis

VIEWER_TOKEN_MAX_AGE_S = 6 * 3600
TOKEN_PREFIX = "vt_"
_MAX_TOKEN_LENGTH = 64


@dataclass(frozen=True)
class ViewerGrant:
    session_id: str
    control: bool
    expires_at: float


def _key(token: str) -> str:
    return "enigma:viewer-token:" + hashlib.sha256(token.encode()).hexdigest()


def viewer_token_create(*, session_id: str, control: bool, ttl_s: float = VIEWER_TOKEN_MAX_AGE_S) -> str:
    """Mint a viewer token for the session: it may watch, and click and type if `control`."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(24)
    expires_at = time.time() + ttl_s
    get_redis().set(
        _key(token), json.dumps({"s": session_id, "c": bool(control), "e": expires_at}), ex=max(1, int(ttl_s))
    )
    return token


def viewer_token_read(token: str) -> ViewerGrant | None:
    """Return the grant of a valid, unexpired token, else None."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > _MAX_TOKEN_LENGTH:
        return None
    raw = get_redis().get(_key(token))
    if raw is None:
        return None
    data = json.loads(raw)
    if float(data["e"]) <= time.time():
        return None
    return ViewerGrant(session_id=str(data["s"]), control=bool(data["c"]), expires_at=float(data["e"]))


def viewer_url(*, base_url: str, session_id: str, control: bool) -> str:
    return f"{base_url}/view/{viewer_token_create(session_id=session_id, control=control)}"


def whep_url(*, base_url: str, session_id: str) -> str:
    """`streaming.webRTCURL`: the session's WHEP endpoint (video/views.py) behind a watch-only
    viewer token (the stream is video; control goes over the socket)."""
    return f"{base_url}/whep/{viewer_token_create(session_id=session_id, control=False)}"
