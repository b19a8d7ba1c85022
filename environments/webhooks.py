"""Webhook signing, verification and the address guard (no database here).

Every delivery carries `Enigma-Signature: t=<unix seconds>,v1=<hex>` where the hex is
HMAC-SHA256(team webhook secret, f"{t}.{raw body}"). A receiver recomputes it, compares in
constant time and rejects timestamps older than its tolerance (replays); `verify` does exactly
that and is what our own tests and a Python receiver can use.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
import time
from urllib.parse import urlsplit

from agents.netguard import address_block_reason

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


def url_block_reason(url: str, *, allowed_hosts: frozenset[str], resolve: bool = True) -> str | None:
    """Why a webhook may not be sent to `url` (the browser's private-address rule), or None.

    Without `resolve`, only literal addresses are judged (request time); the delivery resolves.
    The address is resolved here and again by the HTTP client, so DNS rebinding is not excluded:
    an egress firewall around the workers is the complete answer (as for the browser).
    """
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").rstrip(".")
    except ValueError:
        return "invalid_url"
    if parts.scheme not in ("http", "https"):
        return f"scheme:{parts.scheme or 'none'}"
    if not host:
        return "invalid_url"
    if host in allowed_hosts:
        return None
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        if not resolve:
            return None
        try:
            infos = socket.getaddrinfo(host, parts.port or 443, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            return "dns_unresolvable"
        addresses = [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]
    for address in addresses:
        reason = address_block_reason(address)
        if reason is not None and str(address) not in allowed_hosts:
            return reason
    return None
