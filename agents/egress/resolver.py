"""Name resolution for the egress gate: the system resolver, or one DNS server (tests).

The gate resolves every name itself and connects to an address it checked, so what a page's DNS
answers a second time never matters. Answers are cached for `CACHE_SECONDS` per name; the cache
holds the checked answer, so it cannot be used to rebind either.

`DnsServerResolver` is a minimal DNS client (A and AAAA over UDP, RFC 1035) used when
`ENIGMA_EGRESS_RESOLVER=host:port` points the gate at a resolver of the operator's (or a test's).
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import struct
import time

from .rules import IPAddress, as_ip

CACHE_SECONDS = 30.0
CACHE_MAX = 4096
QUERY_TIMEOUT_S = 2.0
_A, _AAAA = 1, 28


class ResolveError(Exception):
    """The name has no usable address."""


def _is_localhost(name: str) -> bool:
    return name == "localhost" or name.endswith(".localhost")


class Resolver:
    """System resolver (getaddrinfo) with a short cache."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[float, tuple[IPAddress, ...]]] = {}

    async def resolve(self, name: str) -> tuple[IPAddress, ...]:
        literal = as_ip(name)
        if literal is not None:
            return (literal,)
        now = time.monotonic()
        hit = self._cache.get(name)
        if hit is not None and hit[0] > now:
            return hit[1]
        addresses = await self._lookup(name)
        if not addresses:
            raise ResolveError(name)
        if len(self._cache) >= CACHE_MAX:
            self._cache.clear()
        self._cache[name] = (now + CACHE_SECONDS, addresses)
        return addresses

    async def _lookup(self, name: str) -> tuple[IPAddress, ...]:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(name, None, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise ResolveError(name) from exc
        found: list[IPAddress] = []
        for info in infos:
            ip = as_ip(str(info[4][0]))
            if ip is not None and ip not in found:
                found.append(ip)
        return tuple(found)


class DnsServerResolver(Resolver):
    """Asks one DNS server over UDP; `localhost` names are loopback without asking."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__()
        self._server = (host, port)

    async def _lookup(self, name: str) -> tuple[IPAddress, ...]:
        if _is_localhost(name):
            return (as_ip("127.0.0.1"), as_ip("::1"))  # type: ignore[return-value]
        try:
            labels = name.encode("idna")
        except UnicodeError as exc:
            raise ResolveError(name) from exc
        results = await asyncio.gather(self._query(labels, _A), self._query(labels, _AAAA), return_exceptions=True)
        found: list[IPAddress] = []
        for result in results:
            if isinstance(result, BaseException):
                continue
            found.extend(ip for ip in result if ip not in found)
        return tuple(found)

    async def _query(self, name: bytes, qtype: int) -> list[IPAddress]:
        ident = secrets.randbelow(65536)
        question = b"".join(bytes([len(p)]) + p for p in name.split(b".") if p) + b"\x00"
        packet = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + question + struct.pack("!HH", qtype, 1)
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[bytes] = loop.create_future()

        class _Protocol(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: object) -> None:
                if len(data) >= 2 and struct.unpack("!H", data[:2])[0] == ident and not answer.done():
                    answer.set_result(data)

        transport, _ = await loop.create_datagram_endpoint(_Protocol, remote_addr=self._server)
        try:
            transport.sendto(packet)
            data = await asyncio.wait_for(answer, QUERY_TIMEOUT_S)
        finally:
            transport.close()
        return _parse_answers(data, qtype)


def _skip_name(data: bytes, offset: int) -> int:
    while True:
        length = data[offset]
        if length & 0xC0 == 0xC0:
            return offset + 2
        if length == 0:
            return offset + 1
        offset += 1 + length


def _parse_answers(data: bytes, qtype: int) -> list[IPAddress]:
    _, flags, qdcount, ancount, _, _ = struct.unpack("!HHHHHH", data[:12])
    if flags & 0x000F:  # rcode: NXDOMAIN, SERVFAIL, ...
        return []
    offset = 12
    for _ in range(qdcount):
        offset = _skip_name(data, offset) + 4
    found: list[IPAddress] = []
    for _ in range(ancount):
        offset = _skip_name(data, offset)
        rtype, _, _, rdlength = struct.unpack("!HHIH", data[offset : offset + 10])
        offset += 10
        rdata = data[offset : offset + rdlength]
        offset += rdlength
        if rtype == qtype == _A and rdlength == 4:
            found.append(as_ip(socket.inet_ntop(socket.AF_INET, rdata)))  # type: ignore[arg-type]
        elif rtype == qtype == _AAAA and rdlength == 16:
            found.append(as_ip(socket.inet_ntop(socket.AF_INET6, rdata)))  # type: ignore[arg-type]
    return found
