"""HTTP/1.1 framing for the egress gate, on llhttp (Node's parser, through httptools).

The gate parses every request Chromium sends it and every response a server sends back, once per
request of every page, so this is its hot path: llhttp is C and strict (it refuses a request with
both Content-Length and Transfer-Encoding, duplicate lengths, bare CR/LF and bad tokens), and the
streams below hand the gate whole events instead of one callback per header. Heads the gate sends
on are rebuilt from the parsed parts, never copied from the wire.

The parsers do no I/O: the connection's protocol (`wire.py`) feeds them what arrives, and they
queue events in `events`. `RequestParser` (a client connection) queues a `Head`, then `bytes`
body pieces, then `END`, for each request; a `CONNECT` (or another upgrade) stops it, and
`leftover` holds what followed its head. `ResponseParser` (one upstream connection) queues the
final `Head` (1xx answers are skipped), `bytes` pieces, then `END`.
"""

from __future__ import annotations

import collections

import httptools

READ_SIZE = 65536
MAX_HEADER_BYTES = 64 * 1024

END = b""  # the end of a message's body (body pieces are never empty)

# What a proxy must not pass on (RFC 9110 section 7.6.1), plus the old proxy spellings.
HOP_HEADERS = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)


class ProtocolError(Exception):
    """Bytes that are not HTTP/1.1, or a head over the size limit."""


class Head:
    """A request or response head. Header names are lower-case."""

    __slots__ = ("headers", "keep_alive", "method", "reason", "status", "target", "version")

    def __init__(self, method: bytes = b"") -> None:
        self.method = method  # requests
        self.target = b""  # requests
        self.status = 0  # responses
        self.reason = b""  # responses
        self.headers: list[tuple[bytes, bytes]] = []
        self.keep_alive = True
        self.version = "1.1"

    @property
    def chunked(self) -> bool:
        """Whether the last transfer coding is chunked (as llhttp frames the body)."""
        last = None
        for n, v in self.headers:
            if n == b"transfer-encoding":
                last = v
        return last is not None and last.rsplit(b",", 1)[-1].strip().lower() == b"chunked"

    def value(self, name: bytes) -> bytes | None:
        for n, v in self.headers:
            if n == name:
                return v
        return None


class _Parser:
    """Shared by both directions: callbacks of llhttp collect events into a queue."""

    def __init__(self) -> None:
        self.events: collections.deque[Head | bytes] = collections.deque()
        self.upgraded = False
        self.leftover = b""
        self._head: Head | None = None
        self._in_head = False
        self._head_bytes = 0
        self.untouched = True  # no byte has come yet

    # llhttp callbacks
    def on_message_begin(self) -> None:
        self._head = Head()
        self._in_head = True

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self._head is not None
        self._head.headers.append((name.lower(), value))

    def on_body(self, body: bytes) -> None:
        if body:
            self.events.append(body)

    def on_message_complete(self) -> None:
        self.events.append(END)
        self._head = None

    def _complete_head(self, head: Head | None) -> None:
        self._in_head = False
        self._head_bytes = 0
        if head is not None:
            self.events.append(head)

    def feed(self, data: bytes) -> None:
        """Parse what came from the wire (events are queued); ProtocolError when it is not HTTP."""
        self.untouched = False
        if self._in_head or self._head is None:  # these bytes begin or continue a head
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self.upgraded = True
            self.leftover = data[upgrade.args[0] :] if upgrade.args else b""
        except httptools.HttpParserError as exc:
            raise ProtocolError(str(exc)) from exc
        if self._in_head and self._head_bytes > MAX_HEADER_BYTES:
            raise ProtocolError("head too large")

    parser: httptools.HttpRequestParser | httptools.HttpResponseParser


class RequestParser(_Parser):
    def __init__(self) -> None:
        super().__init__()
        self._request_parser = httptools.HttpRequestParser(self)
        self.parser = self._request_parser
        self._target: list[bytes] = []
        self.body_pending = False  # a request's head was handed out and its END not yet

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._target = []

    def on_url(self, url: bytes) -> None:
        self._target.append(url)

    def on_headers_complete(self) -> None:
        head = self._head
        assert head is not None
        head.method = self._request_parser.get_method()
        head.target = b"".join(self._target)
        head.keep_alive = self.parser.should_keep_alive()
        head.version = self.parser.get_http_version()
        self._complete_head(head)

    def pop(self) -> Head | bytes | None:
        """The next queued event, or None."""
        return self._pop() if self.events else None

    def _pop(self) -> Head | bytes:
        event = self.events.popleft()
        if isinstance(event, Head):
            self.body_pending = True
        elif event is END:
            self.body_pending = False
        return event


class ResponseParser(_Parser):
    def __init__(self) -> None:
        super().__init__()
        self._response_parser = httptools.HttpResponseParser(self)
        self.parser = self._response_parser
        self._reason: list[bytes] = []
        self.framing = ""  # "length" | "chunked" | "close" | "none", once the head is in
        self.keep_alive = False  # the final response lets the connection carry another
        self._skip_end = False

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reason = []

    def on_status(self, reason: bytes) -> None:
        self._reason.append(reason)

    def on_headers_complete(self) -> None:
        head = self._head
        assert head is not None
        head.status = self._response_parser.get_status_code()
        head.reason = b"".join(self._reason)
        head.keep_alive = self.parser.should_keep_alive()
        head.version = self.parser.get_http_version()
        if 100 <= head.status < 200:
            self._complete_head(None)
            self._skip_end = True  # an interim answer: its end is not the response's end
            return
        self.keep_alive = head.keep_alive  # HTTP/1.0 without keep-alive, or Connection: close
        if head.status in (204, 304):
            self.framing = "none"
        elif head.chunked:
            self.framing = "chunked"
        elif head.value(b"content-length") is not None:
            self.framing = "length"
        else:
            self.framing = "close"
        self._complete_head(head)

    def on_message_complete(self) -> None:
        if self._skip_end:
            self._skip_end = False
            self._head = None
        else:
            super().on_message_complete()

    def next_response(self) -> None:
        """Ready for the next response on a kept-alive connection (the last one was reusable)."""
        self.framing = ""
        self.keep_alive = False
        self.untouched = True

    @property
    def reusable(self) -> bool:
        """The response ended cleanly and nothing else came: the connection may carry another."""
        return (
            self.keep_alive
            and not self.upgraded
            and self._head is None
            and not self.events
            and self.framing in ("length", "chunked", "none")
        )


def head_bytes(first_line: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join([first_line, b"\r\n", *[n + b": " + v + b"\r\n" for n, v in headers], b"\r\n"])


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"


def response_bytes(status: int, reason: str, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> bytes:
    """A whole response of the gate's own (403, 407, 502, 504)."""
    all_headers = [*(headers or []), (b"Content-Length", str(len(body)).encode())]
    return head_bytes(b"HTTP/1.1 %d %s" % (status, reason.encode()), all_headers) + body


__all__ = [
    "END",
    "HOP_HEADERS",
    "LAST_CHUNK",
    "MAX_HEADER_BYTES",
    "READ_SIZE",
    "Head",
    "ProtocolError",
    "RequestParser",
    "ResponseParser",
    "chunk",
    "head_bytes",
    "response_bytes",
]
