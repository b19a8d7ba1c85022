"""Webhook signing and verification (no database here).

Every delivery carries `Enigma-Signature: t=<unix seconds>,v1=<hex>` where the hex is
HMAC-SHA256(team webhook secret, f"{t}.{raw body}"). A receiver recomputes it, compares in
constant time and rejects timestamps older than its tolerance (replays); `verify` does exactly
that and is what our own tests and a Python receiver can use.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "Enigma-Signature"
DELIVERY_HEADER = "Enigma-Delivery"
EVENT_HEADER = "Enigma-Event"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The header value for `body` sent at `timestamp`."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: str, header: str, body: bytes, *, tolerance_s: int = 300, now: float | None = None) -> bool:
    """True if `header` signs `body` with `secret` and is at most `tolerance_s` old."""
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        parts.setdefault(key, []).append(value)
    try:
        timestamp = int(parts["t"][0])
    except (KeyError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        return False
    expected = signature(secret, timestamp, body).split("v1=", 1)[1]
    return any(hmac.compare_digest(expected, candidate) for candidate in parts.get("v1", []))
