"""Loopback servers of the egress battery: a target that logs everything that reaches it (TCP
accepts, HTTP requests, UDP datagrams), the attacker's page server, and a tiny DNS resolver.

Everything here is plain sockets and `http.server`, so what the log says arrived really arrived.
"""

from __future__ import annotations

import base64
import hashlib
import html
import socket
import socketserver
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

PAGES = Path(__file__).resolve().parent / "pages"
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


@dataclass(frozen=True)
class Hit:
    """One thing that reached a server: `kind` is tcp (an accepted connection), http (a parsed
    request, `what` is "METHOD path"), udp (a datagram) or dns (a query, `what` is the name)."""

    kind: str
    local: str
    peer: str
    what: str = ""
    body: bytes = b""
    at: float = field(default_factory=time.time)

    def __str__(self) -> str:
        body = f" body={self.body[:80]!r}" if self.body else ""
        return f"{self.kind} {self.local} <- {self.peer} {self.what}{body}"


class Log:
    """A thread-safe list of hits shared by every socket of one server."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hits: list[Hit] = []

    def add(self, hit: Hit) -> None:
        with self._lock:
            self._hits.append(hit)

    def hits(self) -> list[Hit]:
        with self._lock:
            return list(self._hits)

    def clear(self) -> None:
        with self._lock:
            self._hits.clear()

    def paths(self, token: str) -> list[str]:
        """The request lines whose path carries `token`."""
        return [hit.what for hit in self.hits() if hit.kind == "http" and token in hit.what]


def _name(address: tuple[str, int] | tuple[str, int, int, int]) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _Handler(BaseHTTPRequestHandler):
    """Logs each request, then answers it like a private service would: a secret page readable
    from any origin, redirects, a WebSocket that says the secret, an event stream, a download."""

    server: _HttpServer
    protocol_version = "HTTP/1.1"
    timeout = 5

    def _route(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.log.add(
            Hit("http", self.server.label, _name(self.client_address), f"{self.command} {self.path}", body)
        )
        parts = urlsplit(self.path)
        query = dict(parse_qsl(parts.query))
        if self.command == "OPTIONS":
            self._send(204, b"", "text/plain")
        elif parts.path == "/redirect":
            self._send(int(query.get("code", "302")), b"", "text/plain", [("Location", query.get("to", "/"))])
        elif parts.path.startswith("/p/") and self.server.serve_pages:
            self._page(parts.path.removeprefix("/p/"), query)
        elif self.headers.get("Upgrade", "").lower() == "websocket":
            self._websocket()
        elif "event-stream" in self.headers.get("Accept", ""):
            self._send(200, f"data: {self.server.secret}\n\n".encode(), "text/event-stream")
        elif parts.path.endswith(".csv"):
            self._send(
                200,
                f"secret,{self.server.secret}\n".encode(),
                "text/csv",
                [("Content-Disposition", 'attachment; filename="private.csv"')],
            )
        else:
            page = f"<title>{self.server.secret}</title><h1>{self.server.secret}</h1>"
            self._send(200, page.encode(), "text/html; charset=utf-8")

    do_GET = do_POST = do_PUT = do_OPTIONS = do_HEAD = _route

    def _page(self, name: str, query: dict[str, str]) -> None:
        path = (PAGES / name).resolve()
        if path.parent != PAGES or not path.is_file():
            self._send(404, b"no such page", "text/plain")
            return
        text = path.read_text()
        for key, value in query.items():
            text = text.replace("{{" + key + "}}", html.escape(value, quote=True))
        self._send(
            200,
            text.encode(),
            CONTENT_TYPES.get(path.suffix, "application/octet-stream"),
            [("Service-Worker-Allowed", "/")],
        )

    def _websocket(self) -> None:
        key = self.headers.get("Sec-WebSocket-Key", "")
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        message = self.server.secret.encode()
        self.wfile.write(struct.pack("!BB", 0x81, len(message)) + message)
        self.wfile.flush()
        self.close_connection = True

    def _send(self, status: int, body: bytes, content_type: str, headers: list[tuple[str, str]] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Access-Control-Allow-Methods", "*")
        self.send_header("Access-Control-Allow-Headers", "*")
        self.send_header("Access-Control-Allow-Private-Network", "true")
        for name, value in headers or []:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """The Log is the record; keep test output quiet."""


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], log: Log, secret: str, serve_pages: bool) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.log, self.secret, self.serve_pages = log, secret, serve_pages
        super().__init__(address, _Handler)
        self.label = _name(self.socket.getsockname())  # what server_address holds, typed as an inet address

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        socketserver.TCPServer.server_bind(self)

    def verify_request(self, request: object, client_address: tuple[str, int]) -> bool:
        self.log.add(Hit("tcp", self.label, _name(client_address)))
        return True


class _UdpSocket:
    """Logs every datagram (STUN, TURN, QUIC) and never answers."""

    def __init__(self, address: tuple[str, int], log: Log) -> None:
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(0.2)
        self.log = log
        self.label = _name(self.sock.getsockname())
        self._stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            self.log.add(Hit("udp", self.label, _name(peer), f"{len(data)} bytes", data[:64]))

    def close(self) -> None:
        self._stop.set()
        self.sock.close()


class LogServer:
    """HTTP over TCP and a UDP socket on the same port of each of `hosts`, one shared Log.

    `port=0` picks a port that is free on every host (TCP and UDP). `secret` is what the server
    answers with, so a test can tell whether anything it served was read back.
    """

    def __init__(self, hosts: tuple[str, ...], *, port: int = 0, serve_pages: bool = False, udp: bool = True) -> None:
        self.hosts = hosts
        self.log = Log()
        self._tcp: list[_HttpServer] = []
        self._udp: list[_UdpSocket] = []
        self._serving = False
        for _ in range(50):
            self.port = port or _free_port(hosts[0])
            self.secret = f"PRIVATE-SECRET-{self.port}"
            try:
                for host in hosts:
                    self._tcp.append(_HttpServer((host, self.port), self.log, self.secret, serve_pages))
                    if udp:
                        self._udp.append(_UdpSocket((host, self.port), self.log))
                break
            except OSError:
                self.close()
                if port:
                    raise
        else:
            raise RuntimeError(f"no port free on all of {hosts}")
        for server in self._tcp:
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
        self._serving = True

    def url(self, path: str = "/", host: str | None = None) -> str:
        host = host or self.hosts[0]
        return f"http://{host}:{self.port}{path}"

    def hits(self) -> list[Hit]:
        return self.log.hits()

    def close(self) -> None:
        for server in self._tcp:
            if self._serving:
                server.shutdown()
            server.server_close()
        for sock in self._udp:
            sock.close()
        self._tcp, self._udp, self._serving = [], [], False


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# DNS ---------------------------------------------------------------------------------------


class DnsResolver:
    """A UDP DNS responder on 127.0.0.1: `answer(resolver, name, qtype)` returns the address to
    give (A for IPv4, AAAA for IPv6) or None for NXDOMAIN; every query is logged. `records` is a
    table the answer function may read."""

    def __init__(
        self, answer: Callable[[DnsResolver, str, int], str | None], host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.answer = answer
        self.records: dict[str, str] = {}
        self.log = Log()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.sock.settimeout(0.2)
        self.host, self.port = self.sock.getsockname()
        self._stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                reply = self._reply(data, peer)
            except (ValueError, IndexError, struct.error):
                continue
            self.sock.sendto(reply, peer)

    def _reply(self, data: bytes, peer: tuple[str, int]) -> bytes:
        ident, _flags, qdcount = struct.unpack("!HHH", data[:6])
        if qdcount < 1:
            raise ValueError("no question")
        labels, offset = [], 12
        while data[offset]:
            length = data[offset]
            labels.append(data[offset + 1 : offset + 1 + length].decode("ascii"))
            offset += 1 + length
        qtype, _qclass = struct.unpack("!HH", data[offset + 1 : offset + 5])
        question = data[12 : offset + 5]
        name = ".".join(labels).lower()
        self.log.add(Hit("dns", f"{self.host}:{self.port}", _name(peer), f"{name} type={qtype}"))
        address = self.answer(self, name, qtype)
        record = b""
        if address is not None and qtype in (1, 28):
            family = socket.AF_INET6 if qtype == 28 else socket.AF_INET
            try:
                rdata = socket.inet_pton(family, address)
            except OSError:
                rdata = b""
            if rdata:
                record = b"\xc0\x0c" + struct.pack("!HHIH", qtype, 1, 0, len(rdata)) + rdata
        rcode = 0 if address is not None else 3
        header = struct.pack("!HHHHHH", ident, 0x8180 | rcode, 1, 1 if record else 0, 0, 0)
        return header + question + record

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
