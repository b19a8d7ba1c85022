"""Session proxies (api.md §5.4): custom http and socks proxies; the managed pool is a setting.

The browser never talks to a session proxy itself: the worker's egress gate chains the session's
traffic to it (http CONNECT or socks5, with credentials), after the gate's own checks. A custom
proxy's address passes the browser's address rules here at the edge and again at the gate: no
private or loopback address unless `ENIGMA_ALLOWED_PRIVATE_HOSTS` allows that `host:port`, and
never one of the product's own services (`ENIGMA_OWN_ADDRESSES`) unless named exactly.

The public part of a proxy is kept in the session config (shown by GET /sessions/<id>); the
credentials go to Redis next to the session's command stream, like task secrets, so they are
never echoed back, logged or written to the database, and a worker that takes the session over
can still use them.
"""

from __future__ import annotations

import json
import socket
from typing import Any
from urllib.parse import unquote, urlsplit

from django.conf import settings

from agents.egress.rules import allow_list, as_ip, own_services, parse_host, split_host_port, target_block_reason
from enigma_site.errors import ApiError, InvalidParameter
from enigma_site.redis import get_async_redis, get_redis

FIELDS = {"source", "type", "host", "port", "username", "password", "level", "country"}
MANAGED_SOURCES = ("webrun", "enigma")


class ProxyUnavailable(ApiError):
    code = "PROXY_UNAVAILABLE"


def _key(session_id: str) -> str:
    return f"enigma:proxy-auth:{session_id}"


def _text(proxy: dict[str, Any], key: str, *, required: bool = False, max_len: int = 255) -> str | None:
    value = proxy.get(key)
    if value is None:
        if required:
            raise InvalidParameter(f"proxy.{key}", f"Invalid parameter 'proxy.{key}': required")
        return None
    if isinstance(value, int) and not isinstance(value, bool) and key == "port":
        value = str(value)
    if not isinstance(value, str) or (required and not value.strip()) or len(value) > max_len:
        raise InvalidParameter(f"proxy.{key}", f"Invalid parameter 'proxy.{key}': must be a string")
    return value.strip() if key in ("host", "port", "type", "source", "level", "country") else value


def proxy_parse(proxy: Any, *, resolve: bool = True) -> tuple[dict[str, Any], dict[str, str]]:
    """Validate a session `proxy`; return (public config, Playwright proxy settings)."""
    if not isinstance(proxy, dict):
        raise InvalidParameter("proxy", "Invalid parameter 'proxy': must be an object or null")
    for key in proxy:
        if key not in FIELDS:
            raise InvalidParameter(f"proxy.{key}", f"Unknown field 'proxy.{key}'")
    source = (_text(proxy, "source", required=True) or "").lower()
    level = _text(proxy, "level")
    if level is not None and level not in ("system", "chrome"):
        raise InvalidParameter("proxy.level", "Invalid parameter 'proxy.level': must be system or chrome")
    if source in MANAGED_SOURCES:
        return _managed(proxy, level)
    if source != "custom":
        raise InvalidParameter("proxy.source", "Invalid parameter 'proxy.source': must be custom or WebRun")
    kind = _text(proxy, "type", required=True)
    if kind not in ("http", "socks"):
        raise InvalidParameter("proxy.type", "Invalid parameter 'proxy.type': must be http or socks")
    host = _text(proxy, "host", required=True) or ""
    port = _text(proxy, "port", required=True) or ""
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise InvalidParameter("proxy.port", "Invalid parameter 'proxy.port': must be a port number (1-65535)")
    if any(c in host for c in "/@ ?#"):
        raise InvalidParameter("proxy.host", "Invalid parameter 'proxy.host': must be a host name or address")
    username, password = _text(proxy, "username"), _text(proxy, "password")
    reason = proxy_address_reason(host, int(port), resolve=resolve)
    if reason is not None:
        raise InvalidParameter(
            "proxy.host", f"Invalid parameter 'proxy.host': this proxy address is not allowed ({reason})"
        )
    scheme = "socks5" if kind == "socks" else "http"
    bare = host.strip("[]")
    browser = {"server": f"{scheme}://[{bare}]:{port}" if ":" in bare else f"{scheme}://{host}:{port}"}
    if username:
        browser["username"] = username
        browser["password"] = password or ""
    public = {
        "source": "custom",
        "type": kind,
        "host": host,
        "port": port,
        "level": level,
        "authenticated": bool(username),
    }
    return public, browser


def _addresses(host: str, *, resolve: bool) -> list[Any]:
    literal = as_ip(host)
    if literal is not None:
        return [literal]
    if not resolve:
        return []
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    return [ip for ip in (as_ip(str(info[4][0])) for info in infos) if ip is not None]


def proxy_address_reason(host: str, port: int, *, resolve: bool = True) -> str | None:
    """Why the browser's traffic may not be sent to a proxy at `host:port`, or None.

    The egress gate's rules (agents/egress/rules.py). Without `resolve`, a name is accepted here
    and judged by the gate when it connects."""
    name = parse_host(host)
    addresses = _addresses(name, resolve=resolve)
    if not addresses:
        return "dns_unresolvable" if resolve else None
    own = []
    for entry in settings.ENIGMA_OWN_ADDRESSES:
        own_host, own_port = split_host_port(entry)
        if own_port and own_port.isdigit():
            own.append((own_host, int(own_port), _addresses(own_host, resolve=True)))
    return target_block_reason(
        name, port, addresses, allowed=allow_list(settings.ENIGMA_ALLOWED_PRIVATE_HOSTS), own=own_services(own)
    )


def _managed(proxy: dict[str, Any], level: str | None) -> tuple[dict[str, Any], dict[str, str]]:
    url = settings.ENIGMA_MANAGED_PROXY_URL
    if not url:
        raise ProxyUnavailable(
            'Managed proxies (source "WebRun") are not available on this installation; '
            'use a custom proxy (source "custom")',
            details={"parameter": "proxy.source"},
        )
    parts = urlsplit(url)
    hostname = f"[{parts.hostname}]" if parts.hostname and ":" in parts.hostname else parts.hostname
    browser = {"server": f"{parts.scheme}://{hostname}:{parts.port}"}
    if parts.username:
        browser["username"] = unquote(parts.username)
        browser["password"] = unquote(parts.password or "")
    country = _text(proxy, "country") or "random"
    return {"source": "WebRun", "country": country, "level": level}, browser


def proxy_store(*, session_id: str, browser: dict[str, str]) -> None:
    """Keep the browser proxy settings (with credentials) for the session's life."""
    ttl = int(settings.ENIGMA_SESSION_MAX_LIFETIME_S + settings.ENIGMA_ORPHAN_GRACE_S + 60)
    get_redis().set(_key(session_id), json.dumps(browser), ex=ttl)


async def aproxy_load(session_id: str) -> dict[str, str] | None:
    raw = await get_async_redis().get(_key(session_id))
    return json.loads(raw) if raw else None


async def aproxy_forget(session_id: str) -> None:
    await get_async_redis().delete(_key(session_id))
