"""storage_state.py agrees with Chromium: every state it accepts loads in new_context(), and every
state it refuses really fails there (so no rule refuses a profile that would have worked)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Error, async_playwright

from environments.storage_state import StateInvalid, check_state

ORIGIN = "http://127.0.0.1:9"
COOKIE = {"name": "a", "value": "b", "domain": "example.com", "path": "/"}


def _cookie(**fields: Any) -> dict[str, Any]:
    return {"cookies": [{**COOKIE, **fields}]}


def _cookie_without(*keys: str) -> dict[str, Any]:
    return {"cookies": [{k: v for k, v in COOKIE.items() if k not in keys}]}


def _origin(**fields: Any) -> dict[str, Any]:
    return {"origins": [{"origin": ORIGIN, "localStorage": [], **fields}]}


def _store(**fields: Any) -> dict[str, Any]:
    store = {"name": "kv", "autoIncrement": False, "records": [], "indexes": [], **fields}
    return _origin(indexedDB=[{"name": "db", "version": 1, "stores": [store]}])


def _records(*records: dict[str, Any], **store: Any) -> dict[str, Any]:
    return _store(records=list(records), **store)


LOADS = {
    "a full cookie": _cookie(expires=-1, httpOnly=True, secure=True, sameSite="Strict"),
    "a url cookie": {"cookies": [{"name": "a", "value": "b", "url": "https://example.com/x"}]},
    "exporter extras": _cookie(hostOnly=True, storeId="0"),
    "an empty name": _cookie(name=""),
    "unicode": _cookie(value="grüße", domain="bücher.de"),
    "a partitioned cookie": _cookie(
        secure=True, sameSite="None", partitionKey="https://other.com", _crHasCrossSiteAncestor=False
    ),
    "the latest expiry": _cookie(expires=253402300799),
    "localStorage": _origin(localStorage=[{"name": "k", "value": "v"}]),
    "out-of-line keys": _records(
        {"key": "a", "value": 1},
        {"keyEncoded": {"v": "Infinity"}, "value": 2},
        {"key": [1, "x"], "valueEncoded": {"o": [{"k": "n", "v": {"d": "2020-01-01"}}], "id": 1}},
    ),
    "in-line keys": _records(
        {"value": {"id": 1}}, {"valueEncoded": {"o": [{"k": "id", "v": 2}], "id": 1}}, keyPath="id"
    ),
    "a key generator": _records({"value": {"x": 1}}, {"value": {"id": 7}}, keyPath="id", autoIncrement=True),
    "a unique index": _records(
        {"key": 1, "value": {"n": "x"}},
        {"key": 2, "value": {"n": "y"}},
        indexes=[{"name": "i", "keyPath": "n", "multiEntry": False, "unique": True}],
    ),
    "typed arrays": _records({"key": "a", "valueEncoded": {"ta": {"b": "AAAAAA==", "k": "i32"}}}),
}

FAILS = {
    "no path": (_cookie_without("path"), "cookies[0]"),
    "no domain": (_cookie_without("domain"), "cookies[0]"),
    "a number value": (_cookie(value=5), "cookies[0].value"),
    "a ';' in the value": (_cookie(value="a;b"), "cookies[0].value"),
    "a tab in the value": (_cookie(value="a\tb"), "cookies[0].value"),
    "an '=' in the name": (_cookie(name="a=b"), "cookies[0].name"),
    "no name and no value": (_cookie(name="", value=""), "cookies[0]"),
    "too long": (_cookie(value="x" * 5000), "cookies[0]"),
    "a string expiry": (_cookie(expires="soon"), "cookies[0].expires"),
    "a negative expiry": (_cookie(expires=-5), "cookies[0].expires"),
    "an expiry past 9999": (_cookie(expires=1e20), "cookies[0].expires"),
    "a lowercase sameSite": (_cookie(sameSite="lax"), "cookies[0].sameSite"),
    "a string httpOnly": (_cookie(httpOnly="yes"), "cookies[0].httpOnly"),
    "an empty domain": (_cookie(domain=""), "cookies[0].domain"),
    "a dot domain": (_cookie(domain="."), "cookies[0].domain"),
    "a relative path": (_cookie(path="x"), "cookies[0].path"),
    "a long path": (_cookie(path="/" + "p" * 1100), "cookies[0].path"),
    "url and domain": ({"cookies": [{**COOKIE, "url": "https://example.com/"}]}, "cookies[0]"),
    "a bad url": ({"cookies": [{"name": "a", "value": "b", "url": "not a url"}]}, "cookies[0].url"),
    "an ftp url": ({"cookies": [{"name": "a", "value": "b", "url": "ftp://example.com/"}]}, "cookies[0].url"),
    "__Secure- without secure": (_cookie(name="__Secure-a"), "cookies[0].secure"),
    "__Host- with a path": (_cookie(name="__Host-a", secure=True, path="/x"), "cookies[0].path"),
    "a bare partitionKey": (_cookie(partitionKey="https://other.com"), "cookies[0].partitionKey"),
    "a bad origin": ({"origins": [{"origin": "notaurl", "localStorage": []}]}, "origins[0].origin"),
    "a chrome origin": ({"origins": [{"origin": "chrome://settings", "localStorage": []}]}, "origins[0].origin"),
    "a file origin": ({"origins": [{"origin": "file://", "localStorage": []}]}, "origins[0].origin"),
    "a number in localStorage": (_origin(localStorage=[{"name": "a", "value": 1}]), "origins[0].localStorage[0].value"),
    "localStorage over quota": (
        _origin(localStorage=[{"name": "a", "value": "x" * 5_300_000}]),
        "origins[0].localStorage",
    ),
    "localStorage as an object": (_origin(localStorage={"a": "b"}), "origins[0].localStorage"),
    "version 0": (_origin(indexedDB=[{"name": "d", "version": 0, "stores": []}]), "origins[0].indexedDB[0].version"),
    "an object key": (_records({"key": {"x": 1}, "value": 1}), "records[0]"),
    "a boolean key": (_records({"key": True, "value": 1}), "records[0]"),
    "no key": (_records({"value": 1}), "records[0]"),
    "a duplicate key": (_records({"key": "a", "value": 1}, {"key": "a", "value": 2}), "records[1]"),
    "a key path that yields nothing": (_records({"value": {"x": 1}}, keyPath="id"), "records[0]"),
    "a key with a key path": (_records({"key": 1, "value": {"id": 1}}, keyPath="id"), "records[0]"),
    "a broken unique index": (
        _records(
            {"key": 1, "value": {"n": "x"}},
            {"key": 2, "value": {"n": "x"}},
            indexes=[{"name": "i", "keyPath": "n", "multiEntry": False, "unique": True}],
        ),
        "records[1]",
    ),
    "a bad key path": (_store(keyPath="a b!"), "keyPath"),
    "a generator on an array key path": (_store(keyPathArray=["a", "b"], autoIncrement=True), "autoIncrement"),
    "two stores of one name": (
        _origin(
            indexedDB=[
                {
                    "name": "d",
                    "version": 1,
                    "stores": [{"name": "kv", "autoIncrement": False, "records": [], "indexes": []}] * 2,
                }
            ]
        ),
        "stores[1].name",
    ),
    "a function value": (_records({"key": "a", "valueEncoded": {"fn": "x"}}), "valueEncoded"),
    "a regular expression": (_records({"key": "a", "valueEncoded": {"r": {"p": "(", "f": ""}}}), "valueEncoded"),
    "bad base64": (_records({"key": "a", "valueEncoded": {"ta": {"b": "!!!", "k": "ui8"}}}), "ta.b"),
    "a bad bigint": (_records({"key": "a", "valueEncoded": {"bi": "xyz"}}), "bi"),
    "an object that is not one": (_records({"key": "a", "valueEncoded": {"o": 5}}), "valueEncoded.o"),
    "no records": (
        _origin(
            indexedDB=[{"name": "d", "version": 1, "stores": [{"name": "kv", "autoIncrement": False, "indexes": []}]}]
        ),
        "records",
    ),
}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=os.environ.get("CHROMIUM_PATH", "/usr/lib/chromium/chromium"),
            args=["--no-sandbox", "--disable-gpu"],
        )
        yield browser
        await browser.close()


async def _loads(browser: Browser, state: dict[str, Any]) -> bool:
    try:
        context = await browser.new_context(storage_state={"cookies": [], "origins": [], **state})  # type: ignore[arg-type]
    except Error:
        return False
    await context.close()
    return True


async def _load_all(browser: Browser, states: list[dict[str, Any]]) -> list[bool]:
    results: list[bool] = []
    for start in range(0, len(states), 8):  # a few contexts at a time
        results += await asyncio.gather(*(_loads(browser, s) for s in states[start : start + 8]))
    return results


@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="session")
async def test_every_accepted_state_loads_and_every_refused_one_fails_in_chromium(chromium: Browser) -> None:
    for name, (state, where) in FAILS.items():
        with pytest.raises(StateInvalid) as refused:
            check_state(state)
        assert where in refused.value.path, (name, refused.value.path, str(refused.value))
    accepted = await _load_all(chromium, [check_state(state) for state in LOADS.values()])
    assert [n for n, ok in zip(LOADS, accepted, strict=True) if not ok] == [], "accepted but does not load"
    refused_loads = await _load_all(chromium, [state for state, _ in FAILS.values()])
    assert [n for n, ok in zip(FAILS, refused_loads, strict=True) if ok] == [], "refused but loads in Chromium"
