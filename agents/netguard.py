"""The in-browser first layer of the network rules, and the per-session network policy.

The rule itself is enforced outside the browser, by the egress gate (`agents.egress`): Chromium
runs in a network namespace whose only way out is the gate, which judges every connection. This
module keeps two things:
- `NetworkPolicy`, what one session may reach (read by the gate on every connection);
- `NetworkGuard`, a friendly first layer: `SessionBrowser.goto` asks it before navigating, so
  the agent gets a clear `BlockedNavigation` reason at once for what the rules alone settle (a
  scheme, an avoided domain, a literal private address). It does no DNS and sees no policy domain
  rules: everything else the gate decides (its refusals come back as a 403 with
  `X-Enigma-Blocked`, or a failed tunnel), and nothing depends on this layer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import idna

from agents.egress.rules import address_block_reason, allow_list, as_ip, parse_host, target_block_reason

if TYPE_CHECKING:
    from agents.egress.gate import Gate

__all__ = ["NetworkGuard", "NetworkPolicy", "address_block_reason", "matches_avoided", "normalize_domain"]

logger = logging.getLogger(__name__)

# Schemes Chromium serves from memory without touching the network.
INTERNAL_SCHEMES = frozenset({"data", "blob", "about"})
NETWORK_SCHEMES = frozenset({"http", "https", "ws", "wss"})
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


# Fields whose change must reach connections the gate already let through (see `changed`).
_RULE_FIELDS = frozenset({"avoid_domains", "allowed_private_hosts"})


@dataclass
class NetworkPolicy:
    """What one session may reach. Mutable: the gate reads it on every connection, and when the
    rules change (`avoid_domains` or `allowed_private_hosts` set to another value, or `changed()`
    called after the domain rules changed) it closes the session's open connections, so no
    tunnel opened under the old rules stays open.

    allowed_private_hosts: `ENIGMA_ALLOWED_PRIVATE_HOSTS` entries (`host:port`, `host:*`, bare
        `host` = `host:*`), see `agents.egress.rules`.
    domain_rule: url -> a decision with `.action` ("allow" | "guardrail" | "block") and `.rule`
        (the automation policy's domain rules); None = no policy.
    on_policy_block: (url, decision) called when a domain rule refused a connection (audit).
    approved_hosts: guardrail domains a human approved for this session; the gate lets them pass.
    """

    avoid_domains: list[str] = field(default_factory=list)
    allowed_private_hosts: frozenset[str] = frozenset()
    on_blocked: Callable[[str, str], Any] | None = None
    domain_rule: Callable[[str], Any] | None = None
    on_policy_block: Callable[[str, Any], Any] | None = None
    approved_hosts: set[str] = field(default_factory=set)
    listeners: list[Callable[[], Any]] = field(default_factory=list, repr=False, compare=False)

    def __setattr__(self, name: str, value: Any) -> None:
        old = self.__dict__.get(name, _RULE_FIELDS)  # the sentinel: not set yet
        object.__setattr__(self, name, value)
        if name in _RULE_FIELDS and old is not _RULE_FIELDS and old != value:
            self.changed()

    def changed(self) -> None:
        """The rules changed: tell the gate (it cuts the session's open connections)."""
        for listener in list(self.listeners):
            run_callback(listener)


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
    if value.isascii():
        return value
    try:
        # UTS 46, non-transitional: what browsers send ("faß.de" is xn--fa-hia.de, not fass.de).
        return idna.encode(value, uts46=True, transitional=False).decode("ascii")
    except idna.IDNAError:
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


# Strong references to async callbacks still running (the loop keeps only weak ones).
_pending_callbacks: set[asyncio.Future[object]] = set()


def run_callback(callback: Callable[..., Any], *args: Any) -> None:
    """Run a session callback (sync or async) without letting it break the caller: a failing
    callback is logged."""
    try:
        result = callback(*args)
        if asyncio.iscoroutine(result):
            task = asyncio.ensure_future(result)
            _pending_callbacks.add(task)
            task.add_done_callback(_pending_callbacks.discard)
    except Exception:
        logger.exception("network policy callback failed")


class NetworkGuard:
    """The per-context policy slot of the first layer. A warm context carries a guard with no
    policy, which blocks everything (fail closed) until `acquire` sets the session's policy."""

    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self.policy: NetworkPolicy | None = None

    def check(self, url: str) -> str | None:
        """Return None unless the rules alone refuse `url` (no DNS: the gate decides the rest),
        else a short reason such as "avoided_domain:facebook.com", "scheme:file" or
        "loopback_address"."""
        try:
            parts = urlsplit(url)
            host = parse_host(parts.hostname or "")
            scheme = parts.scheme.lower()
            port = parts.port or _DEFAULT_PORTS.get(scheme, 0)
        except ValueError:
            return "invalid_url"
        if scheme in INTERNAL_SCHEMES:
            return None
        policy = self.policy
        if policy is None:
            return "no_policy"
        if scheme not in NETWORK_SCHEMES:
            return f"scheme:{scheme or 'none'}"
        if not host:
            return "invalid_url"
        avoided = matches_avoided(host, policy.avoid_domains)
        if avoided is not None:
            return f"avoided_domain:{avoided}"
        literal = as_ip(host)
        if literal is None:
            return None
        allowed = allow_list(policy.allowed_private_hosts)
        return target_block_reason(host, port, (literal,), allowed=allowed, own=self.gate.own)

    def report(self, url: str, reason: str) -> None:
        """Tell the session's callback that a request was blocked; a failing callback is logged."""
        policy = self.policy
        if policy is not None and policy.on_blocked is not None:
            run_callback(policy.on_blocked, url, reason)
