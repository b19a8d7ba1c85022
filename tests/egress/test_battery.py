"""The hostile-page battery of issue 15: every way a page can make the browser send bytes to a
private address, each asserted from the private target's own log (TCP accepts, HTTP requests,
UDP datagrams), driven the way a customer drives a session.

Each family has a positive control: the same page aimed at an allowed server does reach it, so
no test passes because its page is broken.
"""

from __future__ import annotations

import os
import time
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis

from tests.conftest import Api

from .conftest import (
    ALLOWED_NAME,
    GRACE_S,
    PAGE_WAIT_S,
    PRIVATE_HOST,
    RESOLVER,
    TEST_DOMAIN,
    Attacker,
    assert_nothing_arrived,
    run_page,
    run_tasks,
    task_text,
)
from .servers import LogServer

pytestmark = pytest.mark.slow


def assert_arrived(sink: LogServer, token: str, body: dict[str, Any], *names: str) -> None:
    paths = sink.log.paths(token)
    for name in names:
        assert any(f"/{token}/{name}" in path for path in paths), (
            f"{name} never reached the allowed sink: {paths}; the page said: {task_text(body)[:1500]}"
        )


def assert_ran(body: dict[str, Any], *markers: str) -> None:
    text = task_text(body)
    for marker in markers:
        assert marker in text, f"the page did not report {marker!r}: {text[:1500]}"


# Popups -----------------------------------------------------------------------------------

POPUPS = ["open", "302", "307"]


def _popup_then_read(api: Api, page: str) -> list[dict[str, Any]]:
    """The popup becomes the session's page, so the next task's result is read from it."""
    return run_tasks(api, f"go to {page} then wait {PAGE_WAIT_S} seconds", "extract the text")


@pytest.mark.parametrize("mode", POPUPS)
def test_popup_never_reaches_a_private_host(
    api: Api, attacker: Attacker, target: LogServer, token: str, mode: str
) -> None:
    """window.open of a private URL, and popups whose same-origin hop redirects there (302 GET,
    307 re-sending a POST body); the next task's result must not carry the private page."""
    first, second = _popup_then_read(
        api, attacker.page("popup.html", mode=mode, token=token, target=target.url(f"/{token}/popup", PRIVATE_HOST))
    )
    assert_nothing_arrived(target, first)
    assert target.secret not in task_text(second), "the next task read the private page back"


@pytest.mark.parametrize("mode", POPUPS)
def test_popup_control_reaches_an_allowed_host(
    api: Api, attacker: Attacker, sink: LogServer, token: str, mode: str
) -> None:
    first, second = _popup_then_read(
        api, attacker.page("popup.html", mode=mode, token=token, target=sink.url(f"/{token}/popup"))
    )
    assert_arrived(sink, token, first, "popup")
    assert sink.secret in task_text(second), "the popup is not the page the next task reads"
    if mode == "307":
        assert any(hit.body == f"stolen=post-body-{token}".encode() for hit in sink.hits())


# Iframes with redirect hops ----------------------------------------------------------------


def _hops(attacker: Attacker, final: str, host: str) -> str:
    """Two redirect hops on `host` (the attacker's origin, or another site) ending at `final`."""
    return attacker.redirect(attacker.redirect(final, 307, host=host), 302, host=host)


FRAME_HOSTS = {"same-site": "127.0.0.1", "cross-site": "localhost"}


@pytest.mark.parametrize("site", FRAME_HOSTS)
def test_iframe_redirect_hops_never_reach_a_private_host(
    api: Api, attacker: Attacker, target: LogServer, token: str, site: str
) -> None:
    src = _hops(attacker, target.url(f"/{token}/frame", PRIVATE_HOST), FRAME_HOSTS[site])
    body = run_page(api, attacker.page("frame.html", src=src))
    assert_nothing_arrived(target, body)


@pytest.mark.parametrize("site", FRAME_HOSTS)
def test_iframe_control_reaches_an_allowed_host(
    api: Api, attacker: Attacker, sink: LogServer, token: str, site: str
) -> None:
    body = run_page(
        api, attacker.page("frame.html", src=_hops(attacker, sink.url(f"/{token}/frame"), FRAME_HOSTS[site]))
    )
    assert_arrived(sink, token, body, "frame")
    assert_ran(body, "ran frame: loaded")


# fetch / XHR / sendBeacon / EventSource / WebSocket from the page and its workers -----------

CONTEXT_APIS = {
    "page": ["fetch", "xhr", "beacon", "eventsource", "websocket"],
    "worker": ["fetch", "xhr", "eventsource", "websocket"],
    "sharedworker": ["fetch", "xhr", "eventsource", "websocket"],
    # Service workers have neither XMLHttpRequest nor EventSource nor sendBeacon.
    "serviceworker": ["fetch", "websocket"],
}
CONTEXT_API_CASES = [(ctx, api) for ctx, apis in CONTEXT_APIS.items() for api in apis]


@pytest.mark.parametrize(("ctx", "web_api"), CONTEXT_API_CASES)
def test_web_api_never_reaches_a_private_host(
    api: Api, attacker: Attacker, target: LogServer, token: str, ctx: str, web_api: str
) -> None:
    body = run_page(
        api, attacker.page("apis.html", ctx=ctx, apis=web_api, target=target.url(f"/{token}", PRIVATE_HOST))
    )
    assert_nothing_arrived(target, body)


@pytest.mark.parametrize("ctx", CONTEXT_APIS)
def test_web_api_control_reaches_an_allowed_host(
    api: Api, attacker: Attacker, sink: LogServer, token: str, ctx: str
) -> None:
    apis = CONTEXT_APIS[ctx]
    body = run_page(api, attacker.page("apis.html", ctx=ctx, apis=",".join(apis), target=sink.url(f"/{token}")))
    if "serviceworker refused" in task_text(body):
        # The browser refuses service workers outright: the vector is closed, not untested.
        return
    assert_arrived(sink, token, body, *apis)
    assert_ran(body, f"done {ctx}")


# Resource hints and speculation rules -------------------------------------------------------

HINTS = ["prefetch", "preconnect", "dns-prefetch", "preload"]


@pytest.mark.parametrize("rel", HINTS)
def test_link_hint_never_reaches_a_private_host(
    api: Api, attacker: Attacker, target: LogServer, token: str, rel: str
) -> None:
    body = run_page(api, attacker.page("hints.html", rels=rel, target=target.url(f"/{token}", PRIVATE_HOST)))
    assert_nothing_arrived(target, body)


def test_link_hint_control_reaches_an_allowed_host(api: Api, attacker: Attacker, sink: LogServer, token: str) -> None:
    body = run_page(api, attacker.page("hints.html", rels="prefetch,preload", target=sink.url(f"/{token}")))
    assert_arrived(sink, token, body, "prefetch", "preload")


SPECULATIONS = ["prefetch", "prerender"]


@pytest.mark.parametrize("action", SPECULATIONS)
def test_speculation_rules_never_reach_a_private_host(
    api: Api, attacker: Attacker, target: LogServer, token: str, action: str
) -> None:
    body = run_page(
        api, attacker.page("speculation.html", actions=action, target=target.url(f"/{token}", PRIVATE_HOST))
    )
    assert_nothing_arrived(target, body)


def test_speculation_rules_control_reach_an_allowed_host(
    api: Api, attacker: Attacker, sink: LogServer, token: str
) -> None:
    body = run_page(api, attacker.page("speculation.html", actions="prefetch,prerender", target=sink.url(f"/{token}")))
    assert_ran(body, "supported true")
    assert_arrived(sink, token, body, "prefetch", "prerender")


# WebRTC and WebTransport (UDP and TURN over TCP) --------------------------------------------


def _ice(kind: str, host: str, port: int) -> str:
    return {
        "stun": f"stun:{host}:{port}",
        "turn-udp": f"turn:{host}:{port}?transport=udp",
        "turn-tcp": f"turn:{host}:{port}?transport=tcp",
    }[kind]


ICE = ["stun", "turn-udp", "turn-tcp"]


@pytest.mark.parametrize("kind", ICE)
def test_webrtc_ice_servers_never_reach_a_private_host(
    api: Api, attacker: Attacker, target: LogServer, kind: str
) -> None:
    body = run_page(api, attacker.page("webrtc.html", ice=_ice(kind, PRIVATE_HOST, target.port)), wait_s=2)
    assert_ran(body, "ran webrtc")
    assert_nothing_arrived(target, body)


def test_webrtc_control_runs(api: Api, attacker: Attacker, sink: LogServer) -> None:
    """Behind the gate WebRTC has no way out at all, even to an allowed host (no UDP leaves the
    namespace, and Chromium does not send TURN over TCP through the context's proxy), so the
    control shows the page really configures the servers and gathers. Without the gate this page
    reached the allowed sink over TURN/TCP (see /work/notes/egress-battery-status.md)."""
    ice = _ice("turn-tcp", "127.0.0.1", sink.port)
    body = run_page(api, attacker.page("webrtc.html", ice=ice), wait_s=2)
    assert_ran(body, f"configured {ice}", "ran webrtc: gathering")


def test_webtransport_never_reaches_a_private_host(api: Api, attacker: Attacker, target: LogServer, token: str) -> None:
    body = run_page(api, attacker.page("webtransport.html", url=f"https://{PRIVATE_HOST}:{target.port}/{token}"))
    assert_ran(body, "ran webtransport")
    assert_nothing_arrived(target, body)


def test_webtransport_control_runs(api: Api, attacker: Attacker, sink: LogServer, token: str) -> None:
    """WebTransport is QUIC, which no proxy carries: the control can only show that the page
    really opens a session (it reports the outcome); the battery's test is the target's log."""
    body = run_page(api, attacker.page("webtransport.html", url=f"https://127.0.0.1:{sink.port}/{token}"))
    assert_ran(body, "ran webtransport: ")


# Meta refresh and downloads -----------------------------------------------------------------


def test_meta_refresh_never_reaches_a_private_host(api: Api, attacker: Attacker, target: LogServer, token: str) -> None:
    body = run_page(api, attacker.page("meta.html", url=target.url(f"/{token}/meta", PRIVATE_HOST)))
    assert_nothing_arrived(target, body)


def test_meta_refresh_control_reaches_an_allowed_host(
    api: Api, attacker: Attacker, sink: LogServer, token: str
) -> None:
    body = run_page(api, attacker.page("meta.html", url=sink.url(f"/{token}/meta")))
    assert_arrived(sink, token, body, "meta")
    assert sink.secret in task_text(body)


def test_download_never_reaches_a_private_host(api: Api, attacker: Attacker, target: LogServer, token: str) -> None:
    body = run_page(api, attacker.page("download.html", url=target.url(f"/{token}/private.csv", PRIVATE_HOST)))
    assert_nothing_arrived(target, body)
    assert not (body.get("data") or {}).get("files"), body


def test_download_control_reaches_an_allowed_host(api: Api, attacker: Attacker, sink: LogServer, token: str) -> None:
    body = run_page(api, attacker.page("download.html", url=sink.url(f"/{token}/private.csv")))
    assert_arrived(sink, token, body, "private.csv")
    assert_ran(body, "ran download")


# Other spellings of loopback ---------------------------------------------------------------


def _page_then_goto(api: Api, page: str, url: str) -> dict[str, Any]:
    """A page that fetches, frames and opens a WebSocket to an address, then the agent told to go
    there itself (a prompt injection's first move)."""
    response = api.post(
        "/start/run-task",
        {"taskDetails": f"go to {page} then wait {PAGE_WAIT_S} seconds then go to {url} then extract the text"},
    )
    assert response.status_code == 200, response.text
    time.sleep(GRACE_S)
    return response.json()


def _redis() -> redis.Redis:
    """The product's own Redis (the test run's, from REDIS_URL)."""
    url = urlsplit(os.environ["REDIS_URL"])
    return redis.Redis(host=url.hostname or "127.0.0.1", port=url.port or 6379)


def _redis_errors(client: redis.Redis) -> int:
    """How many HTTP request lines Redis has refused: "GET /path HTTP/1.1" (or a proxy's "GET
    http://...") is a GET with the wrong number of arguments, which Redis counts as a rejected
    call; the product's own GETs never are. (errorstat_ERR is noisier: the product causes some.)"""
    stats = client.info("commandstats").get("cmdstat_get", {})
    return int(stats.get("rejected_calls", 0))


# Spellings Chromium turns into 127.0.0.1, and others that stay what they are ([::1], the
# IPv4-mapped forms) or name 127.0.0.2, which is on no allow-list.
SPELLINGS_OF_127_0_0_1 = ["127.0.0.1", "2130706433", "0x7f000001", "0177.0.0.1", "127.1"]
OTHER_SPELLINGS = ["[::ffff:127.0.0.1]", "[::1]", "2130706434", "0x7f.0.0.2", "0177.0.0.2", "[::ffff:7f00:2]"]


def _allows_every_port_of_127_0_0_1() -> bool:
    entries = {e.strip() for e in os.environ.get("ENIGMA_ALLOWED_PRIVATE_HOSTS", "").split(",")}
    return bool(entries & {"127.0.0.1", "127.0.0.1:*"})


@pytest.mark.parametrize("host", SPELLINGS_OF_127_0_0_1 + OTHER_SPELLINGS)
def test_loopback_spellings_never_reach_the_target(
    api: Api, attacker: Attacker, target: LogServer, token: str, host: str
) -> None:
    """Every spelling names the target's port, which is on no allow-list."""
    if host in SPELLINGS_OF_127_0_0_1 and _allows_every_port_of_127_0_0_1():
        pytest.skip(
            "ENIGMA_ALLOWED_PRIVATE_HOSTS allows 127.0.0.1 on every port (the test env does): "
            "no port of 127.0.0.1 is private; test_loopback_spellings_never_reach_the_products_redis "
            "covers these spellings"
        )
    base = f"http://{host}:{target.port}/{token}"
    body = _page_then_goto(api, attacker.page("forms.html", target=base), f"{base}/goto")
    assert_nothing_arrived(target, body)


@pytest.mark.parametrize("host", [*SPELLINGS_OF_127_0_0_1, "[::ffff:127.0.0.1]"])  # Redis is not on [::1]
def test_loopback_spellings_never_reach_the_products_redis(api: Api, attacker: Attacker, token: str, host: str) -> None:
    """The product's own services stay out of reach under any spelling, even where the operator
    allows 127.0.0.1 on every port. Redis answers each HTTP GET line with an error, so its error
    counter is the target's log here."""
    client = _redis()
    errors = _redis_errors(client)
    base = f"http://{host}:{client.connection_pool.connection_kwargs['port']}/{token}"
    body = _page_then_goto(api, attacker.page("forms.html", target=base), f"{base}/goto")
    assert _redis_errors(client) == errors, f"{_redis_errors(client) - errors} requests reached Redis: {body}"


def test_loopback_spelling_control_reaches_an_allowed_host(
    api: Api, attacker: Attacker, sink: LogServer, token: str
) -> None:
    base = f"http://2130706433:{sink.port}/{token}"
    body = _page_then_goto(api, attacker.page("forms.html", target=base), f"{base}/goto")
    assert_arrived(sink, token, body, "fetch", "img", "iframe", "websocket", "goto")
    assert sink.secret in task_text(body)


# A DNS name that resolves to loopback ------------------------------------------------------


@pytest.mark.parametrize("address", [PRIVATE_HOST, "127.0.0.1"])
def test_a_name_resolving_to_loopback_never_reaches_the_target(
    api: Api, attacker: Attacker, target: LogServer, token: str, address: str
) -> None:
    """The gate resolves through the test's resolver (ENIGMA_EGRESS_RESOLVER); the name is on no
    allow-list, so what it resolves to is judged, 127.0.0.1 (allowed by address) included."""
    name = f"to-{address.replace('.', '-')}-{token}.{TEST_DOMAIN}"
    RESOLVER.records[name] = address
    base = f"http://{name}:{target.port}/{token}"
    body = _page_then_goto(api, attacker.page("forms.html", target=base), f"{base}/goto")
    assert_nothing_arrived(target, body)
    asked = [hit.what for hit in RESOLVER.log.hits() if name in hit.what]
    assert asked, f"nobody asked the test resolver for {name}: the name was never judged by what it resolves to"


def test_a_name_resolving_to_loopback_control_reaches_an_allowed_host(
    api: Api, attacker: Attacker, sink: LogServer, token: str
) -> None:
    base = f"http://{ALLOWED_NAME}:{sink.port}/{token}"
    body = _page_then_goto(api, attacker.page("forms.html", target=base), f"{base}/goto")
    assert_arrived(sink, token, body, "fetch", "img", "iframe", "websocket", "goto")
    assert sink.secret in task_text(body)


# A session proxy at the product's own Redis ------------------------------------------------


def test_session_proxy_at_the_products_redis_is_refused(api: Api) -> None:
    client = _redis()
    errors = _redis_errors(client)
    kwargs = client.connection_pool.connection_kwargs
    proxy = {"source": "custom", "type": "http", "host": kwargs["host"], "port": str(kwargs["port"])}
    response = api.post("/start/start-session", {"proxy": proxy})
    reached = 0
    if response.status_code == 200:
        # Accepted: measure what the browser then sends to Redis (each proxied request is an
        # inline command Redis answers with an error).
        api.message(
            response.json()["sessionId"],
            {"actionType": "newTask", "taskDetails": "go to http://example.com/ then extract the text"},
        )
        reached = _redis_errors(client) - errors
    assert response.status_code == 400, f"accepted; {reached} proxied requests reached Redis: {response.text}"
    assert response.json()["details"]["parameter"].startswith("proxy"), response.text
    assert _redis_errors(client) == errors, "the browser talked to the product's Redis"
