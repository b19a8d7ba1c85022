"""The storage state of an uploaded profile: checked so that what is accepted always loads.

A session opens its environment with Playwright's `browser.new_context(storage_state=...)`; a
state that Playwright or Chromium refuses fails every session that uses it. `check_state`
accepts exactly what loads (found by loading each case into Chromium, see
tests/environments/test_storage_state.py) and returns it normalised: cookies get their default
fields, unknown cookie fields (exporters add `hostOnly`, `storeId`, ...) are dropped.

- cookies: `name`, `value` (strings without control characters or `;`, no `=` in a name, not
  both empty, 4096 bytes together); either `url` (http or https) or `domain` and `path` (a path
  starting with `/`); `expires` -1 (a session cookie) or a Unix time up to year 9999;
  `httpOnly`, `secure` booleans; `sameSite` `Strict` | `Lax` | `None` (`None` needs `secure`);
  `__Secure-`/`__Host-` names need `secure` (and `__Host-` the path `/`); a `partitionKey`
  (a site such as `https://example.com`) needs `secure` and `_crHasCrossSiteAncestor`.
- origins: `origin` an http(s) origin; `localStorage` name/value strings (at most 5 million
  characters per origin); `indexedDB` databases in Playwright's format (version >= 1, unique
  store and index names, valid key paths, every record's key valid and unique, unique
  indexes respected, values in Playwright's encoding without functions, handles, URLs or
  regular expressions); `opfs` entries with relative paths and base64 file contents.
- every string is valid Unicode (no lone surrogates) and the document nests at most
  MAX_DEPTH levels.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

MAX_DEPTH = 256
MAX_COOKIE_EXPIRES = 253402300799  # 9999-12-31T23:59:59Z, Playwright's bound
MAX_COOKIE_BYTES = 4096
MAX_ATTRIBUTE_BYTES = 1024
MAX_LOCAL_STORAGE_CHARS = 5_000_000  # Chromium's quota is 10 MB of UTF-16 per origin
MAX_IDB_VERSION = 2**53 - 1
SAME_SITE = ("Strict", "Lax", "None")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_BAD_DOMAIN = re.compile(r"[\x00-\x20\x7f/\\?#@:;,%*]")
_IDENTIFIER = r"[A-Za-z_$][A-Za-z0-9_$]*"
_KEY_PATH = re.compile(rf"^(?:{_IDENTIFIER}(?:\.{_IDENTIFIER})*)?$")
_BIGINT = re.compile(r"^-?\d{1,10000}$")
# Playwright's typed-array kinds and their element sizes in bytes.
_TYPED_ARRAYS = {
    "i8": 1,
    "ui8": 1,
    "ui8c": 1,
    "i16": 2,
    "ui16": 2,
    "i32": 4,
    "ui32": 4,
    "f32": 4,
    "f64": 8,
    "bi64": 8,
    "bui64": 8,
}


class StateInvalid(ValueError):
    """The state would not load; `path` says where (e.g. `cookies[2].expires`)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"storage_state.json: {path}: {message}" if path else f"storage_state.json: {message}")
        self.path = path


def check_depth(value: Any) -> None:
    """Raise StateInvalid when `value` nests deeper than MAX_DEPTH (checked without recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise StateInvalid("", f"nests deeper than {MAX_DEPTH} levels")
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)


def _scalars_valid(value: Any) -> None:
    """Every string is valid Unicode and every number finite (JSON has no NaN or Infinity)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise StateInvalid("", "holds a lone UTF-16 surrogate (not valid Unicode)") from exc
        elif isinstance(item, float) and not math.isfinite(item):
            raise StateInvalid("", "holds a number that is not finite (NaN, Infinity or out of range)")
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _string(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise StateInvalid(path, "must be a string")
    return value


def _bool(item: dict[str, Any], key: str, path: str, default: bool = False) -> bool:
    value = item.get(key, default)
    if not isinstance(value, bool):
        raise StateInvalid(f"{path}.{key}", "must be true or false")
    return value


def _list(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise StateInvalid(path, "must be an array")
    return value


def _object(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise StateInvalid(path, "must be an object")
    return value


def _split(value: str) -> Any:
    try:
        return urlsplit(value)
    except ValueError:  # "http://[::1"
        return urlsplit("")


def _http_url(value: str, path: str, *, origin: bool) -> None:
    parts = _split(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or _CONTROL.search(value) or " " in value:
        kind = "origin" if origin else "URL"
        raise StateInvalid(path, f"must be an http or https {kind}, such as https://example.com")


def check_state(state: Any) -> dict[str, Any]:
    """Return the normalised state, or raise StateInvalid naming the place that would not load."""
    check_depth(state)
    _scalars_valid(state)
    state = _object(state, "")
    cookies = [_cookie(c, f"cookies[{i}]") for i, c in enumerate(_list(state.get("cookies", []), "cookies"))]
    origins = [_origin(o, f"origins[{i}]") for i, o in enumerate(_list(state.get("origins", []), "origins"))]
    return {"cookies": cookies, "origins": origins}


def _cookie(raw: Any, path: str) -> dict[str, Any]:
    item = _object(raw, path)
    name = _string(item.get("name"), f"{path}.name")
    value = _string(item.get("value"), f"{path}.value")
    for key, text in (("name", name), ("value", value)):
        if _CONTROL.search(text) or ";" in text:
            raise StateInvalid(f"{path}.{key}", "may not hold control characters or ';'")
    if "=" in name:
        raise StateInvalid(f"{path}.name", "may not hold '='")
    if not name and not value:
        raise StateInvalid(path, "a cookie needs a name or a value")
    if len(name.encode()) + len(value.encode()) > MAX_COOKIE_BYTES:
        raise StateInvalid(path, f"name and value are longer than {MAX_COOKIE_BYTES} bytes")
    cookie: dict[str, Any] = {"name": name, "value": value}
    if "url" in item:
        if "domain" in item or "path" in item:
            raise StateInvalid(path, "give either url, or domain and path, not both")
        url = _string(item["url"], f"{path}.url")
        _http_url(url, f"{path}.url", origin=False)
        cookie["url"] = url
    else:
        if "domain" not in item or "path" not in item:
            raise StateInvalid(path, "a cookie needs a url, or a domain and a path")
        domain = _string(item["domain"], f"{path}.domain")
        if (
            not domain.strip(".")
            or len(domain.encode()) > MAX_ATTRIBUTE_BYTES
            or (_BAD_DOMAIN.search(domain) and not re.fullmatch(r"\[[0-9A-Fa-f:.]+\]", domain))
        ):
            raise StateInvalid(f"{path}.domain", "must be a host name such as example.com or .example.com")
        cookie_path = _string(item["path"], f"{path}.path")
        if (
            not cookie_path.startswith("/")
            or _CONTROL.search(cookie_path)
            or ";" in cookie_path
            or (len(cookie_path.encode()) > MAX_ATTRIBUTE_BYTES)
        ):
            raise StateInvalid(f"{path}.path", "must start with '/' (at most 1024 bytes, no ';')")
        cookie.update(domain=domain, path=cookie_path)
    expires = item.get("expires", -1)
    if not _is_number(expires) or not (expires == -1 or 0 <= expires <= MAX_COOKIE_EXPIRES):
        raise StateInvalid(f"{path}.expires", "must be -1 (a session cookie) or a Unix time in seconds")
    secure = _bool(item, "secure", path)
    same_site = item.get("sameSite", "Lax")
    if same_site not in SAME_SITE:
        raise StateInvalid(f"{path}.sameSite", "must be Strict, Lax or None")
    if same_site == "None" and not secure:
        raise StateInvalid(f"{path}.sameSite", "None needs secure: true (Chromium drops the cookie otherwise)")
    lowered = name.lower()
    if lowered.startswith(("__secure-", "__host-")) and not secure:
        raise StateInvalid(f"{path}.secure", f"a cookie named {name!r} needs secure: true")
    if lowered.startswith("__host-") and cookie.get("path", "/") != "/":
        raise StateInvalid(f"{path}.path", f"a cookie named {name!r} needs the path '/'")
    cookie.update(expires=expires, httpOnly=_bool(item, "httpOnly", path), secure=secure, sameSite=same_site)
    if "partitionKey" in item:
        key = _string(item["partitionKey"], f"{path}.partitionKey")
        parts = _split(key)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query:
            raise StateInvalid(f"{path}.partitionKey", "must be a site such as https://example.com")
        if not secure or not isinstance(item.get("_crHasCrossSiteAncestor"), bool):
            raise StateInvalid(f"{path}.partitionKey", "a partitioned cookie needs secure and _crHasCrossSiteAncestor")
        cookie.update(partitionKey=key, _crHasCrossSiteAncestor=item["_crHasCrossSiteAncestor"])
    return cookie


def _origin(raw: Any, path: str) -> dict[str, Any]:
    item = _object(raw, path)
    origin = _string(item.get("origin"), f"{path}.origin")
    _http_url(origin, f"{path}.origin", origin=True)
    entries = []
    chars = 0
    for i, entry in enumerate(_list(item.get("localStorage", []), f"{path}.localStorage")):
        where = f"{path}.localStorage[{i}]"
        entry = _object(entry, where)
        name, value = _string(entry.get("name"), f"{where}.name"), _string(entry.get("value"), f"{where}.value")
        chars += len(name) + len(value)
        entries.append({"name": name, "value": value})
    if chars > MAX_LOCAL_STORAGE_CHARS:
        raise StateInvalid(f"{path}.localStorage", f"holds more than {MAX_LOCAL_STORAGE_CHARS} characters")
    result: dict[str, Any] = {"origin": origin, "localStorage": entries}
    if "indexedDB" in item:
        result["indexedDB"] = [
            _database(db, f"{path}.indexedDB[{i}]")
            for i, db in enumerate(_list(item["indexedDB"], f"{path}.indexedDB"))
        ]
    if "opfs" in item:
        result["opfs"] = [_opfs(e, f"{path}.opfs[{i}]") for i, e in enumerate(_list(item["opfs"], f"{path}.opfs"))]
    return result


def _opfs(raw: Any, path: str) -> dict[str, Any]:
    item = _object(raw, path)
    name = _string(item.get("path"), f"{path}.path")
    if any(part in ("", ".", "..") or "\\" in part or _CONTROL.search(part) for part in name.split("/")):
        raise StateInvalid(f"{path}.path", "must be a relative path such as dir/file.txt")
    kind = item.get("type")
    if kind not in ("file", "directory"):
        raise StateInvalid(f"{path}.type", "must be file or directory")
    entry: dict[str, Any] = {"path": name, "type": kind}
    if kind == "file":
        entry["base64"] = _string(item.get("base64", ""), f"{path}.base64")
        _base64(entry["base64"], f"{path}.base64")
    return entry


def _base64(value: Any, path: str) -> bytes:
    try:
        return base64.b64decode(_string(value, path), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise StateInvalid(path, "must be base64") from exc


# ----- IndexedDB ---------------------------------------------------------------------------


def _key_path(value: Any, path: str) -> str | list[str]:
    if isinstance(value, list):
        if not value or not all(isinstance(p, str) and p and _KEY_PATH.match(p) for p in value):
            raise StateInvalid(path, "must be a non-empty array of key paths such as a.b")
        return value
    if not isinstance(value, str) or not _KEY_PATH.match(value):
        raise StateInvalid(path, "must be a key path such as id or a.b")
    return value


def _store_key_path(item: dict[str, Any], path: str) -> str | list[str] | None:
    if "keyPathArray" in item:
        if "keyPath" in item:
            raise StateInvalid(path, "give keyPath or keyPathArray, not both")
        return _key_path(_list(item["keyPathArray"], f"{path}.keyPathArray"), f"{path}.keyPathArray")
    if "keyPath" in item:
        return _key_path(_string(item["keyPath"], f"{path}.keyPath"), f"{path}.keyPath")
    return None


def _database(raw: Any, path: str) -> dict[str, Any]:
    item = _object(raw, path)
    name = _string(item.get("name"), f"{path}.name")
    version = item.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= MAX_IDB_VERSION:
        raise StateInvalid(f"{path}.version", "must be an integer of at least 1")
    stores = []
    names: set[str] = set()
    for i, store in enumerate(_list(item.get("stores"), f"{path}.stores")):
        checked = _store(store, f"{path}.stores[{i}]")
        if checked["name"] in names:
            raise StateInvalid(f"{path}.stores[{i}].name", f"store {checked['name']!r} appears twice")
        names.add(checked["name"])
        stores.append(checked)
    return {"name": name, "version": version, "stores": stores}


def _store(raw: Any, path: str) -> dict[str, Any]:
    item = _object(raw, path)
    name = _string(item.get("name"), f"{path}.name")
    auto = _bool(item, "autoIncrement", path)
    key_path = _store_key_path(item, path)
    if auto and (key_path == "" or isinstance(key_path, list)):
        raise StateInvalid(f"{path}.autoIncrement", "cannot be used with an empty or array key path")
    indexes = []
    index_names: set[str] = set()
    for i, index in enumerate(_list(item.get("indexes"), f"{path}.indexes")):
        where = f"{path}.indexes[{i}]"
        index = _object(index, where)
        index_name = _string(index.get("name"), f"{where}.name")
        if index_name in index_names:
            raise StateInvalid(f"{where}.name", f"index {index_name!r} appears twice")
        index_names.add(index_name)
        index_path = _store_key_path(index, where)
        if index_path is None:
            raise StateInvalid(where, "an index needs a keyPath or keyPathArray")
        multi = _bool(index, "multiEntry", where)
        if multi and isinstance(index_path, list):
            raise StateInvalid(f"{where}.multiEntry", "cannot be used with an array key path")
        indexes.append(
            {"name": index_name, "path": index_path, "multiEntry": multi, "unique": _bool(index, "unique", where)}
        )
    records = _list(item.get("records"), f"{path}.records")
    _check_records(records, key_path, auto, indexes, f"{path}.records")
    store: dict[str, Any] = {"name": name, "autoIncrement": auto}
    if isinstance(key_path, list):
        store["keyPathArray"] = key_path
    elif key_path is not None:
        store["keyPath"] = key_path
    store["records"] = records
    store["indexes"] = [
        {
            "name": ix["name"],
            ("keyPathArray" if isinstance(ix["path"], list) else "keyPath"): ix["path"],
            "multiEntry": ix["multiEntry"],
            "unique": ix["unique"],
        }
        for ix in indexes
    ]
    return store


class _Special:
    """A decoded value that is not plain JSON; `key` is its IndexedDB key form, if it has one."""

    def __init__(self, key: tuple[Any, ...] | None = None) -> None:
        self.key = key


_UNDEFINED = _Special()


def _decode(value: Any, path: str, refs: dict[Any, Any], depth: int = 0) -> Any:
    """Playwright's parseEvaluationResultValue, for checking: the same tags in the same order;
    tags IndexedDB cannot store (functions, handles, URLs) and regular expressions (whose
    syntax only a JavaScript engine can check) are refused."""
    if depth > MAX_DEPTH:
        raise StateInvalid(path, f"nests deeper than {MAX_DEPTH} levels")
    if not isinstance(value, dict):
        return value
    if "ref" in value:
        return refs.get(_hashable(value["ref"]), _UNDEFINED)
    if "v" in value:
        special = value["v"]
        if special == "null":
            return None
        if special in ("Infinity", "-Infinity"):
            return _Special(("n", math.inf if special == "Infinity" else -math.inf))
        if special == "-0":
            return 0
        return _UNDEFINED  # undefined, NaN and anything else
    if "d" in value:
        return _Special(_date_key(value["d"]))
    if "u" in value or "h" in value or "fn" in value or "r" in value:
        kind = "a URL" if "u" in value else "a regular expression" if "r" in value else "a function or handle"
        raise StateInvalid(path, f"holds {kind}, which an uploaded profile's IndexedDB may not")
    if "bi" in value:
        if not isinstance(value["bi"], str) or not _BIGINT.match(value["bi"]):
            raise StateInvalid(f"{path}.bi", "must be a decimal integer string")
        return _Special()
    if "e" in value:
        _object(value["e"], f"{path}.e")
        return _Special()
    if "a" in value:
        result: list[Any] = []
        refs[_hashable(value.get("id"))] = result
        result.extend(
            _decode(v, f"{path}.a[{i}]", refs, depth + 1) for i, v in enumerate(_list(value["a"], f"{path}.a"))
        )
        return result
    if "o" in value:
        obj: dict[str, Any] = {}
        refs[_hashable(value.get("id"))] = obj
        for i, entry in enumerate(_list(value["o"], f"{path}.o")):
            entry = _object(entry, f"{path}.o[{i}]")
            obj[str(entry.get("k"))] = _decode(entry.get("v"), f"{path}.o[{i}].v", refs, depth + 1)
        return obj
    if "m" in value or "s" in value:
        tag = "m" if "m" in value else "s"
        refs[_hashable(value.get("id"))] = _UNDEFINED
        for i, entry in enumerate(_list(value[tag], f"{path}.{tag}")):
            if tag == "m":
                entry = _object(entry, f"{path}.m[{i}]")
                _decode(entry.get("k"), f"{path}.m[{i}].k", refs, depth + 1)
                _decode(entry.get("v"), f"{path}.m[{i}].v", refs, depth + 1)
            else:
                _decode(entry, f"{path}.s[{i}]", refs, depth + 1)
        return _Special()
    if "ta" in value:
        typed = _object(value["ta"], f"{path}.ta")
        size = _TYPED_ARRAYS.get(typed.get("k"))  # type: ignore[arg-type]
        data = _base64(typed.get("b"), f"{path}.ta.b")
        if size is None or len(data) % size:
            raise StateInvalid(f"{path}.ta", "must name a typed array kind and hold whole elements")
        return _Special(("b", data))
    if "ab" in value:
        return _Special(("b", _base64(_object(value["ab"], f"{path}.ab").get("b"), f"{path}.ab.b")))
    return value  # any other object is taken as it is


def _hashable(value: Any) -> Any:
    return value if isinstance(value, str | int | float | bool | type(None)) else repr(value)


def _date_key(text: Any) -> tuple[Any, ...] | None:
    if not isinstance(text, str):
        return None
    try:
        return ("d", datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return None  # an invalid Date: a value, never a key


def _key(value: Any, seen: tuple[int, ...] = ()) -> tuple[Any, ...] | None:
    """The IndexedDB key of a decoded value (a comparable tuple), or None when it is not a key."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        try:
            return ("n", float(value)) if not math.isnan(value) else None
        except OverflowError:  # an integer past 1e308 is Infinity in JavaScript
            return ("n", math.inf if value > 0 else -math.inf)
    if isinstance(value, str):
        return ("s", value)
    if isinstance(value, _Special):
        return value.key
    if isinstance(value, list):
        if id(value) in seen:
            return None
        parts = [_key(v, (*seen, id(value))) for v in value]
        return None if any(p is None for p in parts) else ("a", tuple(parts))
    return None


def _evaluate(value: Any, key_path: str | list[str]) -> Any:
    """A key path on a decoded value (`_UNDEFINED` when it yields nothing)."""
    if isinstance(key_path, list):
        return [_evaluate(value, p) for p in key_path]
    if key_path == "":
        return value
    for part in key_path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif part == "length" and isinstance(value, str | list):
            value = len(value)
        else:
            return _UNDEFINED
    return value


def _check_records(
    records: list[Any], key_path: str | list[str] | None, auto: bool, indexes: list[dict[str, Any]], path: str
) -> None:
    keys: set[tuple[Any, ...]] = set()
    unique: dict[str, set[tuple[Any, ...]]] = {ix["name"]: set() for ix in indexes if ix["unique"]}
    for i, raw in enumerate(records):
        where = f"{path}[{i}]"
        record = _object(raw, where)
        if "value" in record:
            value = record["value"]
        else:
            value = _decode(record.get("valueEncoded"), f"{where}.valueEncoded", {})
        has_key = "key" in record or "keyEncoded" in record
        if "key" in record and "keyEncoded" in record:
            raise StateInvalid(where, "give key or keyEncoded, not both")
        if key_path is not None:
            if has_key:
                raise StateInvalid(where, "a store with a keyPath takes its keys from the values, not key")
            extracted = _evaluate(value, key_path)
            if extracted is _UNDEFINED and auto:
                if not isinstance(value, dict):
                    raise StateInvalid(where, "a store with a key generator and a keyPath needs object values")
                key = None
            else:
                key = _key(extracted)
                if key is None:
                    raise StateInvalid(where, f"the value's {key_path!r} is not a valid IndexedDB key")
        else:
            if not has_key:
                if not auto:
                    raise StateInvalid(where, "a store without a keyPath or key generator needs a key")
                key = None
            else:
                raw_key = record["key"] if "key" in record else _decode(record["keyEncoded"], f"{where}.keyEncoded", {})
                key = _key(raw_key)
                if key is None:
                    raise StateInvalid(where, "the key is not a valid IndexedDB key (number, string, date or array)")
        if key is not None:
            if key in keys:
                raise StateInvalid(where, "the key appears twice in the store")
            keys.add(key)
        for index in indexes:
            if not index["unique"]:
                continue
            for index_key in _index_keys(_evaluate(value, index["path"]), index["multiEntry"]):
                if index_key in unique[index["name"]]:
                    raise StateInvalid(where, f"breaks the unique index {index['name']!r}")
                unique[index["name"]].add(index_key)


def _index_keys(value: Any, multi_entry: bool) -> set[tuple[Any, ...]]:
    if multi_entry and isinstance(value, list):
        return {k for k in (_key(v) for v in value) if k is not None}
    key = _key(value)
    return {key} if key is not None else set()
