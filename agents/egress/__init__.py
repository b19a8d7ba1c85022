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
        exempt from the address rules that a customer's proxy must pass.
    """

    sandbox: str = "netns"
    resolver: tuple[str, int] | None = None
    own_addresses: tuple[str, ...] = ()
    trusted_upstreams: tuple[str, ...] = ()
    connect_timeout_s: float = 10.0
