"""The egress gate: every connection the browser makes passes one proxy that decides.

- `rules`: address classes, the allow-list, the product's own services (pure).
- `resolver`: the gate's own name resolution (system, or one DNS server).
- `gate`: the asyncio proxy (CONNECT tunnels and plain HTTP, upstream chaining, byte counts).
- `sandbox` / `nslaunch`: Chromium in an empty network namespace whose only way out is the gate.

No Django here: the worker passes its settings in as an `EgressSettings`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EgressSettings"]


@dataclass(frozen=True)
class EgressSettings:
    """Worker-wide settings of the gate.

    sandbox: "netns" (Chromium in its own network namespace; start fails if impossible) or "off"
        (unsafe: Chromium uses the gate as its proxy but keeps the worker's network).
    resolver: (host, port) of a DNS server the gate asks instead of the system resolver.
    own_addresses: `host:port` of the product's own services, refused unless named exactly.
    trusted_upstreams: `host:port` of operator-configured upstream proxies (the managed pool),
        exempt from the address rules that a customer's proxy must pass; targets sent through one
        are resolved and checked here (it may sit inside our network).
    browser_user: the unprivileged user Chromium runs as (root workers only).
    response_timeout_s: how long a plain-HTTP request may wait for the response to start.
    idle_timeout_s: a tunnel or response body with no byte either way for this long is cut.
    tunnel_grace_s: when one side of a tunnel ends, the other gets this long before it is cut.
    max_connections: open client connections per session; more are refused.
    resolve_timeout_s / max_lookups: a name lookup's deadline, and a session's concurrent lookups.
    """

    sandbox: str = "netns"
    resolver: tuple[str, int] | None = None
    own_addresses: tuple[str, ...] = ()
    trusted_upstreams: tuple[str, ...] = ()
    browser_user: str = "enigma-browser"
    connect_timeout_s: float = 10.0
    response_timeout_s: float = 60.0
    idle_timeout_s: float = 300.0
    tunnel_grace_s: float = 2.0
    max_connections: int = 256
    resolve_timeout_s: float = 3.0
    max_lookups: int = 4
