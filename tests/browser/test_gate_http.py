"""HTTP/1.1 framing through the egress gate, on loopback, without Chromium: what odd or hostile
servers answer (chunked, until-close, HEAD, 1xx, 204, truncated, contradictory lengths) and what
a client may send (pipelined requests, smuggling attempts, oversized heads). Each case asserts what
the client got and what the server saw."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio

from agents.egress import EgressSettings
from agents.egress.gate import Gate, SessionEgress
from agents.netguard import NetworkPolicy

pytestmark = pytest.mark.asyncio(loop_scope="session")


@dataclass
class Scripted:
    """Answers the n-th request it reads with answers[n] (raw bytes; None: close at once)."""

    answers: list[bytes | None]
    close: bool = False  # close after each answer
    requests: list[bytes] = field(default_factory=list)
    accepted: int = 0
    server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.sockets[0].getsockname()[1]

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length) if length else b""
                self.requests.append(head + body)
                answer = self.answers[len(self.requests) - 1] if len(self.requests) <= len(self.answers) else None
                if answer is None:
                    return
                writer.write(answer)
                await writer.drain()
                if self.close or b"HTTP/1.0" in answer.split(b"\r\n", 1)[0]:
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest_asyncio.fixture(loop_scope="session")
async def serve() -> AsyncIterator[Callable[..., Awaitable[Scripted]]]:
    servers: list[Scripted] = []

    async def make(answers: list[bytes | None], close: bool = False) -> Scripted:
        scripted = Scripted(answers, close)
        scripted.server = await asyncio.start_server(scripted.handle, "127.0.0.1", 0)
        servers.append(scripted)
        return scripted

    yield make
    for scripted in servers:
        assert scripted.server is not None
        scripted.server.close()


@pytest_asyncio.fixture(loop_scope="session")
async def slot() -> AsyncIterator[SessionEgress]:
    gate = Gate(EgressSettings(sandbox="off", response_timeout_s=5, idle_timeout_s=5))
    await gate.start(control_socket=None)
    slot = await gate.new_slot()
    policy = NetworkPolicy(allowed_private_hosts=frozenset({"127.0.0.1"}), on_blocked=lambda url, reason: None)
    gate.bind(slot.token, policy=policy, upstream=None)
    yield slot
    await gate.stop()


async def _exchange(slot: SessionEgress, raw: bytes, quiet_s: float = 1.0) -> bytes:
    """Send raw, then read what comes until the gate closes or says nothing for quiet_s (a
    half-close would read as the client going away, which cancels its request)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", slot.port)
    writer.write(raw)
    await writer.drain()
    got = b""
    try:
        while True:
            try:
                data = await asyncio.wait_for(reader.read(65536), quiet_s)
            except TimeoutError:
                return got
            if not data:
                return got
            got += data
    finally:
        writer.close()


def _get(port: int, path: str = "/", method: str = "GET", extra: str = "") -> bytes:
    return f"{method} http://127.0.0.1:{port}{path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}\r\n".encode()


async def test_chunked_until_close_and_length_bodies_arrive_whole_and_the_connection_goes_on(
    slot: SessionEgress, serve: Callable[..., Any]
) -> None:
    chunked = await serve([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"])
    until_close = await serve([b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end"])
    length = await serve([b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfour"])
    got = await _exchange(slot, _get(chunked.port) + _get(until_close.port) + _get(length.port))
    answers = got.split(b"HTTP/1.1 200 ")
    assert len(answers) == 4, got
    assert answers[1].endswith(b"\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    assert b"transfer-encoding: chunked" in answers[2]  # re-framed for the kept-alive client
    assert answers[2].endswith(b"d\r\nuntil the end\r\n0\r\n\r\n")
    assert answers[3].endswith(b"content-length: 4\r\n\r\nfour")


async def test_a_response_whose_last_coding_is_not_chunked_is_read_until_the_server_closes(
    slot: SessionEgress, serve: Callable[..., Any]
) -> None:
    server = await serve([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: xchunked\r\n\r\nraw bytes"], close=True)
    got = await _exchange(slot, _get(server.port))
    assert got.endswith(b"\r\n\r\n9\r\nraw bytes\r\n0\r\n\r\n"), got  # whole, re-framed


async def test_head_204_and_interim_answers_carry_no_body(slot: SessionEgress, serve: Callable[..., Any]) -> None:
    server = await serve(
        [
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",  # a HEAD's answer: the length, no body
            b"HTTP/1.1 204 No Content\r\n\r\n",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        ]
    )
    got = await _exchange(slot, _get(server.port, method="HEAD") + _get(server.port, "/204") + _get(server.port, "/c"))
    assert got.count(b"HTTP/1.1 ") == 3, got  # the 100 stays at the gate
    first, second, third = got.split(b"HTTP/1.1 ")[1:]
    assert first.startswith(b"200") and first.endswith(b"content-length: 5\r\n\r\n")
    assert second == b"204 No Content\r\n\r\n"
    assert third.startswith(b"200") and third.endswith(b"\r\n\r\nok")
    # The connection that answered the HEAD (its parser expected five bytes) was not reused.
    assert server.accepted == 2
    assert len(server.requests) == 3


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    ],
)
async def test_a_response_that_closes_its_connection_is_not_followed_by_a_reused_one(
    slot: SessionEgress, serve: Callable[..., Any], answer: bytes
) -> None:
    server = await serve([answer, answer])  # the server would even read a second request
    got = await _exchange(slot, _get(server.port, "/1") + _get(server.port, "/2"))
    assert got.count(b"HTTP/1.1 200 OK") == 2, got
    assert server.accepted == 2  # a fresh connection for the second request


async def test_pipelined_requests_are_answered_in_order(slot: SessionEgress, serve: Callable[..., Any]) -> None:
    server = await serve([b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n%d" % n for n in range(5)])
    got = await _exchange(slot, b"".join(_get(server.port, f"/{n}") for n in range(5)))
    assert [answer[-1:] for answer in got.split(b"HTTP/1.1 200 OK")[1:]] == [b"0", b"1", b"2", b"3", b"4"]
    assert [request.split(b" ")[1] for request in server.requests] == [b"/0", b"/1", b"/2", b"/3", b"/4"]


@pytest.mark.parametrize(
    "extra",
    [
        "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n",  # CL.TE smuggling
        "Content-Length: 3\r\nContent-Length: 30\r\n",  # two lengths
        "Transfer-Encoding: chunked, identity\r\n",  # chunked not last
        "X-Bad\x01Name: 1\r\n",
        "X-Obs-Fold: a\r\n b\r\n",
    ],
)
async def test_ambiguous_requests_are_refused_and_nothing_reaches_the_server(
    slot: SessionEgress, serve: Callable[..., Any], extra: str
) -> None:
    server = await serve([b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"] * 3)
    raw = _get(server.port, "/", "POST", extra) + b"abc" + _get(server.port, "/smuggled")
    got = await _exchange(slot, raw)
    assert b"200 OK" not in got
    assert server.requests == []


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 9\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",  # then the server closes
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabc",  # closes mid-chunk
        b"NOT HTTP AT ALL\r\n\r\n",
    ],
)
async def test_a_broken_or_contradictory_response_ends_the_client_connection(
    slot: SessionEgress, serve: Callable[..., Any], answer: bytes
) -> None:
    server = await serve([answer], close=True)
    got = await _exchange(slot, _get(server.port) + _get(server.port, "/next"))  # ends, does not hang
    # No answer, or a cut one: the connection is not trusted for a second request.
    assert got.count(b"HTTP/1.1 ") <= 1, got
    assert [request.split(b" ")[1] for request in server.requests] == [b"/"]


async def test_an_oversized_head_is_refused_before_anything_is_forwarded(
    slot: SessionEgress, serve: Callable[..., Any]
) -> None:
    server = await serve([b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"])
    huge = "X-Huge: " + "a" * 70_000 + "\r\n"
    got = await _exchange(slot, _get(server.port, extra=huge))
    assert got == b""
    assert server.requests == []
    again = await _exchange(slot, _get(server.port))  # the gate itself is fine
    assert again.startswith(b"HTTP/1.1 200 OK")


async def test_an_upload_with_a_length_arrives_whole_with_its_head_in_one_piece(
    slot: SessionEgress, serve: Callable[..., Any]
) -> None:
    server = await serve([b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"])
    body = b"x" * 200_000
    raw = _get(server.port, "/up", "POST", f"Content-Length: {len(body)}\r\n") + body
    got = await _exchange(slot, raw)
    assert got.startswith(b"HTTP/1.1 201 Created")
    assert server.requests[0].endswith(b"\r\n\r\n" + body)
    assert b"proxy-connection" not in server.requests[0].lower()


async def test_a_client_that_says_connection_close_gets_its_answer_whole_and_nothing_after_it(
    slot: SessionEgress, serve: Callable[..., Any]
) -> None:
    """The response ends in the upstream connection's callbacks: the client's connection is
    closed after it, and a request pipelined behind `Connection: close` goes nowhere."""
    server = await serve(
        [b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst", b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"]
    )
    started = asyncio.get_running_loop().time()
    got = await _exchange(slot, _get(server.port, "/a", extra="Connection: close\r\n") + _get(server.port, "/b"), 3.0)
    assert got.endswith(b"\r\n\r\nfirst") and got.count(b"HTTP/1.1") == 1, got
    assert asyncio.get_running_loop().time() - started < 2.0  # closed by the gate, not by the quiet timeout
    assert [request.split(b" ")[1] for request in server.requests] == [b"/a"]


async def test_an_http10_client_gets_a_body_until_close_and_then_the_end_of_its_connection(
    slot: SessionEgress, serve: Callable[..., Any]
) -> None:
    server = await serve([b"HTTP/1.1 200 OK\r\n\r\nno length here"], close=True)
    raw = f"GET http://127.0.0.1:{server.port}/ HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".encode()
    started = asyncio.get_running_loop().time()
    got = await _exchange(slot, raw, 3.0)
    assert got.endswith(b"\r\n\r\nno length here") and b"transfer-encoding" not in got.lower(), got
    assert asyncio.get_running_loop().time() - started < 2.0


async def test_a_server_that_stops_answering_a_kept_alive_connection_gets_the_client_a_504() -> None:
    """The response timeout holds for a reused upstream connection too (one sweep times out every
    relay in flight; no timer per request)."""
    gate = Gate(EgressSettings(sandbox="off", response_timeout_s=0.5, idle_timeout_s=5))
    await gate.start(control_socket=None)
    try:
        slot = await gate.new_slot()
        gate.bind(slot.token, policy=NetworkPolicy(allowed_private_hosts=frozenset({"127.0.0.1"})), upstream=None)
        accepted = 0

        async def answers_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal accepted
            accepted += 1
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await reader.readuntil(b"\r\n\r\n")  # then it reads, and never answers
            await asyncio.sleep(10)

        silent = await asyncio.start_server(answers_once, "127.0.0.1", 0)
        port = silent.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", slot.port)
        writer.write(_get(port, "/1"))
        assert (await reader.readuntil(b"ok")).startswith(b"HTTP/1.1 200")
        started = asyncio.get_running_loop().time()
        writer.write(_get(port, "/2"))
        answer = await asyncio.wait_for(reader.read(65536), 3)
        assert answer.startswith(b"HTTP/1.1 504"), answer
        assert 0.4 < asyncio.get_running_loop().time() - started < 1.5
        assert accepted == 1  # the second request went on the kept-alive connection
        assert await asyncio.wait_for(reader.read(65536), 3) == b""  # and the client's connection ended
        writer.close()
        silent.close()
    finally:
        await gate.stop()


async def test_requests_on_a_kept_alive_client_connection_are_judged_and_reported_once_each(
    serve: Callable[..., Any],
) -> None:
    """Most of a page's requests are sent from the client connection's callback (an address
    known without a lookup, a kept-alive upstream): one blocked there is answered 403 and
    reported once, an allowed one still goes, and each gets one decision."""
    blocked: list[tuple[str, str]] = []
    gate = Gate(EgressSettings(sandbox="off", response_timeout_s=5, idle_timeout_s=5))
    await gate.start(control_socket=None)
    try:
        slot = await gate.new_slot()
        policy = NetworkPolicy(
            allowed_private_hosts=frozenset({"127.0.0.1"}), on_blocked=lambda url, reason: blocked.append((url, reason))
        )
        gate.bind(slot.token, policy=policy, upstream=None)
        server = await serve([b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n%d" % n for n in range(3)])
        reader, writer = await asyncio.open_connection("127.0.0.1", slot.port)
        answers = []
        for raw in (
            _get(server.port, "/0"),
            b"GET http://10.1.2.3/x HTTP/1.1\r\nHost: 10.1.2.3\r\n\r\n",
            _get(server.port, "/1"),
        ):
            writer.write(raw)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            answers.append(head.split(b" ")[1] + b" " + await reader.readexactly(length))
        writer.close()
        assert answers[0] == b"200 0" and answers[2] == b"200 1", answers
        assert answers[1].startswith(b"403 Blocked by the network policy: private_address"), answers
        assert blocked == [("http://10.1.2.3/x", "private_address")]
        assert [target for token, target, _ in gate.decisions if token == slot.token] == [
            f"http://127.0.0.1:{server.port}/0",
            "http://10.1.2.3/x",
            f"http://127.0.0.1:{server.port}/1",
        ]
        assert server.accepted == 1  # the third went on the kept-alive connection
    finally:
        await gate.stop()
