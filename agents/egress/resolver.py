"""Name resolution for the egress gate: the system resolver, or one DNS server (tests).

The gate resolves every name itself and connects to an address it checked, so what a page's DNS
answers a second time never matters. Answers are cached for `CACHE_SECONDS` per name (failures
for `NEGATIVE_CACHE_SECONDS`); the cache holds the checked answer, so it cannot be used to rebind
either. Identical lookups in flight are made once. A lookup has a deadline (`timeout_s`); system
lookups run on the resolver's own few threads, never on the loop's default executor (the worker's
database pool), so a DNS server that never answers costs a few threads and nothing else.

`DnsServerResolver` is a minimal DNS client (A and AAAA over UDP, RFC 1035) used when
`ENIGMA_EGRESS_RESOLVER=host:port` points the gate at a resolver of the operator's (or a test's).
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import struct
import time
from concurrent.futures import ThreadPoolExecutor

from .rules import IPAddress, as_ip

CACHE_SECONDS = 30.0
NEGATIVE_CACHE_SECONDS = 10.0
CACHE_MAX = 4096
QUERY_TIMEOUT_S = 2.0
SYSTEM_THREADS = 4
_A, _AAAA = 1, 28


class ResolveError(Exception):
    """The name has no usable address."""


def _is_localhost(name: str) -> bool:
    return name == "localhost" or name.endswith(".localhost")


class Resolver:
    """System resolver (getaddrinfo on its own threads) with a short cache."""

    def __init__(self, *, timeout_s: float = 3.0) -> None:
        self.timeout_s = timeout_s
        self._cache: dict[str, tuple[float, tuple[IPAddress, ...]]] = {}
        self._inflight: dict[str, asyncio.Future[tuple[IPAddress, ...]]] = {}
        self._executor: ThreadPoolExecutor | None = None
        self.lookups = 0  # lookups actually made (not cached, not coalesced)

    def cached(self, name: str) -> tuple[IPAddress, ...] | None:
        """The addresses of a literal, or a name's unexpired cached answer; None otherwise (a
        cached failure too: resolve() raises it)."""
        literal = as_ip(name)
        if literal is not None:
            return (literal,)
        hit = self._cache.get(name)
        return hit[1] if hit is not None and hit[1] and hit[0] > time.monotonic() else None

    async def resolve(self, name: str) -> tuple[IPAddress, ...]:
        addresses: tuple[IPAddress, ...] | None = self.cached(name)
        if addresses is not None:
            return addresses
        hit = self._cache.get(name)
        if hit is not None and hit[0] > time.monotonic():
            addresses = hit[1]
        else:
            pending = self._inflight.get(name)
            if pending is None:
                pending = asyncio.ensure_future(self._lookup_once(name))
                self._inflight[name] = pending
                pending.add_done_callback(lambda _: self._inflight.pop(name, None))
            addresses = await asyncio.shield(pending)  # one waiter giving up stops no other
        if not addresses:
            raise ResolveError(name)
        return addresses

    async def _lookup_once(self, name: str) -> tuple[IPAddress, ...]:
        self.lookups += 1
        try:
            addresses = await asyncio.wait_for(self._lookup(name), self.timeout_s)
        except (TimeoutError, ResolveError):
            addresses = ()
        if len(self._cache) >= CACHE_MAX:
            self._cache.clear()
        ttl = CACHE_SECONDS if addresses else NEGATIVE_CACHE_SECONDS
        self._cache[name] = (time.monotonic() + ttl, addresses)
        return addresses

    async def _lookup(self, name: str) -> tuple[IPAddress, ...]:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=SYSTEM_THREADS, thread_name_prefix="enigma-dns")
        loop = asyncio.get_running_loop()
        try:
            addresses = await loop.run_in_executor(self._executor, _getaddrinfo, name)
        except (OSError, UnicodeError) as exc:
            raise ResolveError(name) from exc
        found: list[IPAddress] = []
        for address in addresses:
            ip = as_ip(address)
            if ip is not None and ip not in found:
                found.append(ip)
        return tuple(found)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


def _getaddrinfo(name: str) -> list[str]:
    """The addresses the system resolver gives for `name`, in its order."""
    return [str(info[4][0]) for info in socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)]


class DnsServerResolver(Resolver):
    """Asks one DNS server over UDP; `localhost` names are loopback without asking."""

    def __init__(self, host: str, port: int, *, timeout_s: float = 3.0) -> None:
        super().__init__(timeout_s=timeout_s)
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
