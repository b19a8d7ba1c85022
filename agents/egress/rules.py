"""What the browser may reach: address classes, the operator's allow-list, the product's own
services. Pure code (no I/O), shared by the egress gate, the in-browser first layer and the edge
check of session proxies.

- `address_block_reason(ip)` unwraps IPv4-mapped, IPv4-compatible, 6to4, Teredo and NAT64 forms
  before classifying, so `::ffff:127.0.0.1`, `2002:7f00:1::` and `64:ff9b::a9fe:a9fe` are what
  they embed.
- `AllowList` parses `ENIGMA_ALLOWED_PRIVATE_HOSTS`: `host:port`, `host:*`, and a bare `host`
  (read as `host:*`). It matches the host as the browser asked for it, never what a name resolves
  to, so a DNS name pointing at 127.0.0.1 is not allowed because 127.0.0.1 is.
- `OwnServices` are the product's own listeners (web port, Redis, database): refused even under
  `host:*`, opened only by an exact `host:port` entry.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

METADATA_ADDRESSES = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),
        ipaddress.ip_address("169.254.170.2"),  # ECS task metadata
        ipaddress.ip_address("100.100.100.200"),  # Alibaba
        ipaddress.ip_address("fd00:ec2::254"),
    }
)
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
# Not global whatever they embed: local-use NAT64 (RFC 8215) and deprecated site-local.
_PRIVATE_V6 = (ipaddress.ip_network("64:ff9b:1::/48"), ipaddress.ip_network("fec0::/10"))


def parse_host(value: str) -> str:
    """Lower-case a host, drop IPv6 brackets and a trailing dot."""
    host = value.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host.rstrip(".")


@lru_cache(maxsize=1024)
def as_ip(host: str) -> IPAddress | None:
    """The address a host literal names (`127.0.0.1`, `::1`, `fe80::1%eth0`), else None.

    Legacy forms (`2130706433`, `0x7f.1`, `0177.0.0.1`) are not literals here: they go to the
    resolver, whose answer is checked like any other.
    """
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


@lru_cache(maxsize=4096)
def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 transition form carries, if any."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    packed = ip.packed
    if any(ip in net for net in _NAT64):
        return ipaddress.IPv4Address(packed[-4:])
    if packed[:12] == bytes(12) and packed[12:] not in (bytes(4), b"\x00\x00\x00\x01"):
        return ipaddress.IPv4Address(packed[-4:])  # IPv4-compatible ::a.b.c.d (deprecated)
    return None


@lru_cache(maxsize=4096)  # pure, and each check walks ipaddress's network lists
def address_block_reason(ip: IPAddress) -> str | None:
    """Why an address must not be reached, or None for a public unicast address. A transition
    form is blocked if what it embeds is, and local-use NAT64 and site-local ones always."""
    inner = embedded_ipv4(ip)
    if inner is not None:
        reason = address_block_reason(inner)
        if reason is None and any(ip in net for net in _PRIVATE_V6):
            return "private_address"
        return reason
    if isinstance(ip, ipaddress.IPv6Address) and any(ip in net for net in _PRIVATE_V6):
        return "private_address"
    if ip in METADATA_ADDRESSES:
        return "metadata_address"
    if ip.is_loopback:
        return "loopback_address"
    if ip.is_link_local:
        return "link_local_address"
    if ip.is_multicast:
        return "multicast_address"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT:
        return "private_address"
    if ip.is_unspecified or ip.is_reserved:
        return "reserved_address"
    if ip.is_private or not ip.is_global:
        return "private_address"
    return None


def split_host_port(entry: str) -> tuple[str, str | None]:
    """`host:port` -> (host, port); `host:*` -> (host, "*"); bare `host` -> (host, None).
    IPv6 needs brackets when a port is given: `[::1]:8080`; a bare `::1` is a host."""
    value = entry.strip()
    if value.startswith("["):
        end = value.find("]")
        if end == -1:
            return parse_host(value), None
        rest = value[end + 1 :]
        return parse_host(value[: end + 1]), rest[1:] if rest.startswith(":") else None
    if value.count(":") == 1:
        host, port = value.split(":")
        return parse_host(host), port.strip()
    return parse_host(value), None


@dataclass(frozen=True)
class AllowList:
    """Private targets the operator opened: exact `host:port` pairs and whole hosts."""

    exact: frozenset[tuple[str, int]]
    any_port: frozenset[str]

    def allows(self, host: str, port: int) -> bool:
        return host in self.any_port or (host, port) in self.exact

    def names_exactly(self, host: str, port: int) -> bool:
        return (host, port) in self.exact


@lru_cache(maxsize=64)
def _parse_allow(entries: tuple[str, ...]) -> AllowList:
    exact: set[tuple[str, int]] = set()
    any_port: set[str] = set()
    for entry in entries:
        host, port = split_host_port(entry)
        if not host:
            continue
        if port is None or port == "*":
            any_port.add(host)
        elif port.isdigit() and 0 < int(port) < 65536:
            exact.add((host, int(port)))
    return AllowList(frozenset(exact), frozenset(any_port))


def allow_list(entries: Iterable[str]) -> AllowList:
    return _parse_allow(tuple(sorted(entries)))


@dataclass(frozen=True)
class OwnServices:
    """The product's own listeners. A loopback or unspecified host covers every loopback address
    at that port (and an unspecified one every address), since that is what it listens on."""

    addresses: frozenset[tuple[IPAddress, int]] = frozenset()
    loopback_ports: frozenset[int] = frozenset()
    any_address_ports: frozenset[int] = frozenset()
    names: frozenset[tuple[str, int]] = frozenset()

    def covers(self, ip: IPAddress, port: int) -> bool:
        inner = embedded_ipv4(ip) or ip
        if port in self.any_address_ports:
            return True
        if port in self.loopback_ports and (inner.is_loopback or inner.is_unspecified):
            return True
        return (inner, port) in self.addresses


def own_services(
    entries: Sequence[tuple[str, int, Sequence[IPAddress]]], local: Sequence[IPAddress] = ()
) -> OwnServices:
    """Build from (host, port, resolved addresses) triples. `local` are this machine's interface
    addresses: a service on a loopback or unspecified host is refused at each of them too (a
    server on 0.0.0.0 answers on every interface, and so may a proxy on the machine)."""
    addresses: set[tuple[IPAddress, int]] = set()
    loopback: set[int] = set()
    anywhere: set[int] = set()
    names: set[tuple[str, int]] = set()
    for host, port, resolved in entries:
        names.add((parse_host(host), port))
        for ip in resolved:
            inner = embedded_ipv4(ip) or ip
            if inner.is_unspecified:
                anywhere.add(port)
            elif inner.is_loopback:
                loopback.add(port)
            addresses.add((inner, port))
    for port in loopback | anywhere:
        addresses.update(((embedded_ipv4(ip) or ip), port) for ip in local)
    return OwnServices(frozenset(addresses), frozenset(loopback), frozenset(anywhere), frozenset(names))


def target_block_reason(
    host: str,
    port: int,
    addresses: Sequence[IPAddress],
    *,
    allowed: AllowList,
    own: OwnServices,
) -> str | None:
    """Whether a connection to `host:port`, resolved to `addresses`, may be made.

    Every address must pass: an own service needs an exact `host:port` entry; a non-public
    address needs the host (as asked) allowed at that port."""
    if not 0 < port < 65536:
        return "bad_port"
    if not addresses:
        return "dns_unresolvable"
    for ip in addresses:
        if (own.covers(ip, port) or (host, port) in own.names) and not allowed.names_exactly(host, port):
            return "own_service"
        reason = address_block_reason(ip)
        if reason is not None and not allowed.allows(host, port):
            return reason
    return None
