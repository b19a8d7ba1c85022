"""Fixtures of the egress battery (issue 15): the attacker's page server and an allowed "sink"
on 127.0.0.1, and per test a fresh private target that nothing may reach.

The target listens on 127.0.0.2, 127.0.0.1 and [::1] at one port (TCP and UDP) that is on no
allow-list; the attacker and the sink are on allowed ports. Each test gets its own target, so
its log holds only what that test's page sent.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.conftest import Api
from tests.helpers import new_task, start, terminate

from .servers import DnsResolver, Hit, LogServer

# Names under this domain are answered from DnsResolver.records; every other name is forwarded
# to the system resolver, so pointing the whole run's gate at this resolver changes nothing else.
TEST_DOMAIN = "egress.test"


def _answer(resolver: DnsResolver, name: str, qtype: int) -> str | None:
    if name == TEST_DOMAIN or name.endswith("." + TEST_DOMAIN):
        return resolver.records.get(name)
    family = socket.AF_INET6 if qtype == 28 else socket.AF_INET
    try:
        return str(socket.getaddrinfo(name, None, family, socket.SOCK_STREAM)[0][4][0])
    except (OSError, UnicodeError):
        return None


# The gate reads ENIGMA_EGRESS_RESOLVER when the worker starts (see /work/notes/egress-design.md),
# and the worker starts after collection: the resolver runs from import so it is there first.
RESOLVER = DnsResolver(_answer)
os.environ.setdefault("ENIGMA_EGRESS_RESOLVER", f"{RESOLVER.host}:{RESOLVER.port}")
# One test name the operator allows (on every port), for the DNS family's positive control; it
# always resolves to 127.0.0.1, so the gate's 30 s cache cannot mix it up.
ALLOWED_NAME = f"allowed.{TEST_DOMAIN}"
RESOLVER.records[ALLOWED_NAME] = "127.0.0.1"
if ALLOWED_NAME not in os.environ.get("ENIGMA_ALLOWED_PRIVATE_HOSTS", ""):
    os.environ["ENIGMA_ALLOWED_PRIVATE_HOSTS"] = ",".join(
        filter(None, [os.environ.get("ENIGMA_ALLOWED_PRIVATE_HOSTS", ""), ALLOWED_NAME])
    )

# What the hostile pages aim at: a loopback address on no allow-list, and its port.
PRIVATE_HOST = "127.0.0.2"
# How long a page has to do its worst after it loaded (its attempts run in parallel).
PAGE_WAIT_S = 1
# How long after the session ended a late packet may still land in a log.
GRACE_S = 0.3


@pytest.fixture
def account(transactional_db: Any) -> dict[str, Any]:
    """tests/conftest.py's account without a password: hashing one costs 1-2 s per test, and a
    battery session needs only the API key."""
    from accounts.services import api_key_create, personal_team, user_create
    from billing.services import ledger_post

    user = user_create(email=f"egress{time.time_ns()}@example.com")
    team = personal_team(user)
    ledger_post(team=team, amount_micros=10_000_000, kind="grant", idempotency_key=f"test-grant:{team.pk}")
    created = api_key_create(team=team, user=user, name="egress")
    return {
        "user": user,
        "team": team,
        "key": created.raw,
        "api_key": created.api_key,
        "headers": {"Authorization": f"Bearer {created.raw}"},
    }


class Attacker:
    """The server of the hostile pages (tests/egress/pages), on an allowed port."""

    def __init__(self, server: LogServer) -> None:
        self.server = server

    def page(self, name: str, host: str = "127.0.0.1", **params: str) -> str:
        query = urlencode(params)
        return self.server.url(f"/p/{name}" + (f"?{query}" if query else ""), host=host)

    def redirect(self, to: str, code: int = 302, host: str = "127.0.0.1") -> str:
        return self.server.url("/redirect?" + urlencode({"code": code, "to": to}), host=host)


@pytest.fixture(scope="session")
def attacker() -> Iterator[Attacker]:
    server = LogServer(("127.0.0.1",), serve_pages=True, udp=False)
    yield Attacker(server)
    server.close()


@pytest.fixture(scope="session")
def _sink_server() -> Iterator[LogServer]:
    server = LogServer(("127.0.0.1",))
    yield server
    server.close()


@pytest.fixture
def sink(_sink_server: LogServer) -> LogServer:
    """An allowed target for the positive controls, its log emptied for each test."""
    _sink_server.log.clear()
    return _sink_server


@pytest.fixture
def target() -> Iterator[LogServer]:
    """A private service no page may reach: its own port, TCP and UDP, on 127.0.0.2, 127.0.0.1
    and [::1]."""
    server = LogServer((PRIVATE_HOST, "127.0.0.1", "::1"))
    yield server
    server.close()


@pytest.fixture
def token() -> str:
    return uuid.uuid4().hex[:12]


def run_page(api: Api, url: str, wait_s: float = PAGE_WAIT_S) -> dict[str, Any]:
    """What a customer does: one run-task that opens `url`, lets it run, reads the text back."""
    response = api.post(
        "/start/run-task", {"taskDetails": f"go to {url} then wait {wait_s} seconds then extract the text"}
    )
    assert response.status_code == 200, response.text
    time.sleep(GRACE_S)
    return response.json()


def run_tasks(api: Api, *tasks: str) -> list[dict[str, Any]]:
    """One session running `tasks` one after another (the next task reads the page the last one
    left, a popup included); returns their results."""
    session = start(api)
    results = [new_task(api, session["sessionId"], text) for text in tasks]
    terminate(api, session["sessionId"])
    time.sleep(GRACE_S)
    return results


def task_text(body: dict[str, Any]) -> str:
    """Everything the customer got back from the task, as one string."""
    data = body.get("data") or {}
    return f"{data.get('message', '')}\n{body.get('error') or ''}\n{body}"


def assert_nothing_arrived(target: LogServer, body: dict[str, Any]) -> None:
    hits: list[Hit] = target.hits()
    read_back = target.secret in task_text(body)
    assert not hits, (
        f"{len(hits)} reached the private target (its page read back into the result: "
        f"{read_back}):\n" + "\n".join(map(str, hits))
    )
    assert not read_back, "the task's result carries the private page's content"
