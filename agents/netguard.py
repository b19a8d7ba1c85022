"""The network guard: decides whether the browser may fetch a URL (spec decision 10).

Pure policy code, no Playwright: `NetworkGuard.check(url)` returns None (allowed) or a reason
string. `agents.browser` calls it from a context-wide route handler for every request and from a
WebSocket route, so avoidDomains and the private-network block hold for navigations and every
sub-resource, not only in the prompt.

Known limits, by design of a check made outside the network stack:
- DNS rebinding: we resolve the host here, Chromium resolves it again when it connects, and an
  attacker's DNS may answer differently the second time. The cache below narrows the window but
  does not close it; the complete answer is an egress firewall (or a filtering proxy) around the
  worker, which the deployment must provide anyway.
- Redirect hops are not passed to Playwright route handlers; `agents.browser` re-checks them from
  the `request` event and stops a redirected navigation that lands on a blocked address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

# Schemes Chromium serves from memory without touching the network.
INTERNAL_SCHEMES = frozenset({"data", "blob", "about"})
NETWORK_SCHEMES = frozenset({"http", "https", "ws", "wss"})
METADATA_ADDRESSES = frozenset({ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")})

DNS_CACHE_SECONDS = 30.0
DNS_CACHE_MAX = 2048

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass
class NetworkPolicy:
    """What one session may reach. Mutable: the guard reads it on every request."""

    avoid_domains: list[str] = field(default_factory=list)
    allowed_private_hosts: frozenset[str] = frozenset()
    on_blocked: Callable[[str, str], None] | None = None


def normalize_domain(entry: str) -> str:
    """Return the bare host an avoidDomains entry names: "https://www.Facebook.com:443/x",
    "*.facebook.com" and ".facebook.com." all become "facebook.com".

    A leading "www." is dropped because users who write it mean the whole site.
    """
    value = entry.strip().lower()
    if "://" in value:
        value = urlsplit(value).hostname or ""
    else:
        value = value.split("/", 1)[0]
        if value.startswith("[") and "]" in value:
            value = value[1 : value.index("]")]
        elif value.count(":") == 1:
            value = value.split(":", 1)[0]
    value = value.strip(".")
    value = value.removeprefix("*.")
    value = value.removeprefix("www.")
    try:
        return value.encode("idna").decode("ascii")
    except UnicodeError:
        return value


@lru_cache(maxsize=256)
def _normalized_domains(entries: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(d for d in (normalize_domain(e) for e in entries) if d)


def matches_avoided(host: str, avoid_domains: Iterable[str]) -> str | None:
    """Return the avoided domain that `host` equals or is a subdomain of, else None.

    "facebook.com" matches facebook.com and m.facebook.com, never notfacebook.com.
    """
    host = host.lower().rstrip(".")
    for domain in _normalized_domains(tuple(avoid_domains)):
        if host == domain or host.endswith("." + domain):
            return domain
    return None


def address_block_reason(ip: IPAddress) -> str | None:
    """Return why a resolved address must not be reached, or None for a public address."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in METADATA_ADDRESSES:
        return "metadata_address"
    if ip.is_loopback:
        return "loopback_address"
    if ip.is_link_local:
        return "link_local_address"
    if ip.is_multicast:
        return "multicast_address"
    if ip.is_unspecified or ip.is_reserved:
        return "reserved_address"
    if ip.is_private or not ip.is_global:
        return "private_address"
    return None


class _DnsCache:
    """A short-lived cache of getaddrinfo answers, shared by every guard of the process."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, tuple[IPAddress, ...]]] = {}

    async def resolve(self, host: str) -> tuple[IPAddress, ...]:
        now = time.monotonic()
        hit = self._entries.get(host)
        if hit is not None and hit[0] > now:
            return hit[1]
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        addresses = tuple({ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos})
        if len(self._entries) >= DNS_CACHE_MAX:
            self._entries.clear()
        self._entries[host] = (now + DNS_CACHE_SECONDS, addresses)
        return addresses


dns_cache = _DnsCache()
# Strong references to async on_blocked callbacks still running (the loop keeps only weak ones).
_pending_callbacks: set[asyncio.Future[object]] = set()


class NetworkGuard:
    """The per-context policy slot. A warm context carries a guard with no policy, which blocks
    everything (fail closed) until `acquire` sets the session's policy."""

    def __init__(self) -> None:
        self.policy: NetworkPolicy | None = None
        self.uses_proxy = False

    async def check(self, url: str) -> str | None:
        """Return None if `url` may be fetched, else a short reason such as
        "avoided_domain:facebook.com", "scheme:file" or "private_address"."""
        policy = self.policy
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").rstrip(".")
        except ValueError:
            return "invalid_url"
        scheme = parts.scheme.lower()
        if scheme in INTERNAL_SCHEMES:
            return None
        if policy is None:
            return "no_policy"
        if scheme not in NETWORK_SCHEMES:
            return f"scheme:{scheme or 'none'}"
        if not host:
            return "invalid_url"
        avoided = matches_avoided(host, policy.avoid_domains)
        if avoided is not None:
            return f"avoided_domain:{avoided}"
        return await self._address_reason(host, policy.allowed_private_hosts)

    async def _address_reason(self, host: str, allowed: frozenset[str]) -> str | None:
        if host in allowed:
            return None
        try:
            addresses: tuple[IPAddress, ...] = (ipaddress.ip_address(host),)
        except ValueError:
            try:
                addresses = await dns_cache.resolve(host)
            except (OSError, UnicodeError):
                # Behind a proxy the proxy resolves the name; without one Chromium would fail
                # too, and failing closed costs nothing.
                return None if self.uses_proxy else "dns_unresolvable"
        for ip in addresses:
            reason = address_block_reason(ip)
            if reason is not None and str(ip) not in allowed:
                return reason
        return None

    def report(self, url: str, reason: str) -> None:
        """Tell the session's callback that a request was blocked; a failing callback is logged,
        never allowed to break the route handler."""
        policy = self.policy
        if policy is None or policy.on_blocked is None:
            return
        try:
            result = policy.on_blocked(url, reason)
            if asyncio.iscoroutine(result):
                task = asyncio.ensure_future(result)
                _pending_callbacks.add(task)
                task.add_done_callback(_pending_callbacks.discard)
        except Exception:
            logger.exception("on_blocked callback failed")
