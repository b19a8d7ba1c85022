"""Where a webhook may be sent: the browser's private-address rule applied to a URL (no database).

Here, in the sessions app, because a task's webhook is checked when the task is submitted; the
webhooks app (delivery) and the triggers app (a trigger's webhook) use it too.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from agents.netguard import address_block_reason


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
        # An inet sockaddr's host is a str (typeshed types sockaddr[0] as str | int).
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    for address in addresses:
        reason = address_block_reason(address)
        if reason is not None and str(address) not in allowed_hosts:
            return reason
    return None
