"""Signed, expiring viewer links for the live view (`streaming.webViewURL`)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import signing

_SALT = "enigma.viewer"
VIEWER_TOKEN_MAX_AGE_S = 6 * 3600


def viewer_token(*, session_id: str, control: bool) -> str:
    return signing.dumps({"s": session_id, "c": bool(control)}, salt=_SALT, compress=True)


def viewer_token_read(token: str) -> dict[str, Any] | None:
    """Return {"session_id", "control"} for a valid, unexpired token, else None."""
    try:
        data = signing.loads(token, salt=_SALT, max_age=VIEWER_TOKEN_MAX_AGE_S)
    except signing.BadSignature:
        return None
    return {"session_id": data["s"], "control": bool(data["c"])}


def public_base_url(request: Any) -> str:
    """Where clients reach us: ENIGMA_PUBLIC_URL, else the request's own scheme and host."""
    return settings.ENIGMA_PUBLIC_URL or f"{request.scheme}://{request.get_host()}"


def viewer_url(*, base_url: str, session_id: str, control: bool) -> str:
    return f"{base_url}/view/{session_id}?token={viewer_token(session_id=session_id, control=control)}"
