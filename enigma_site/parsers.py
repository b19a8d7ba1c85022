"""The one JSON reader of the API (REST views through DRF, and the OpenAI-compatible endpoint).

It rejects, with a 4xx naming where it is, what no endpoint can use, so each endpoint only
validates its own fields:

* a body over `DATA_UPLOAD_MAX_MEMORY_SIZE` (413 `PAYLOAD_TOO_LARGE`), or not UTF-8;
* nesting deeper than `MAX_DEPTH` (also what would raise RecursionError in the parser);
* strings (values and keys) holding a lone UTF-16 surrogate (`"\\ud800"`: no database, socket
  or page takes it) or NUL (PostgreSQL text cannot hold it);
* numbers that are not finite (`1e400`, `NaN`, `Infinity`) or integers outside 64 bits.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import IO, Any, Protocol

from django.conf import settings
from rest_framework import parsers

from .errors import ApiError, InvalidParameter, PayloadTooLarge

MAX_DEPTH = 64
INT_MIN, INT_MAX = -(2**63), 2**63 - 1


class InvalidJson(ApiError):
    code = "INVALID_JSON"


def body_limit() -> int:
    return int(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)


def printable(text: str) -> str:
    """`text` safe to put in a response: lone surrogates and NUL as backslash escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def _bad_text(text: str) -> bool:
    if "\x00" in text:
        return True
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _child(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    key = printable(key)
    return f"{path}.{key}" if path else key


def check_value(data: Any, path: str = "") -> None:
    """Raise ApiError naming the first place in parsed JSON that no endpoint can use (`path`
    names `data` itself). Also for input that did not come through `json_loads` (socket
    messages, MCP tool arguments)."""
    stack: list[tuple[str, Any, int]] = [(path, data, 0)]
    while stack:
        path, value, depth = stack.pop()
        if isinstance(value, str):
            if _bad_text(value):
                raise InvalidParameter(
                    path,
                    f"Invalid parameter '{path}': lone UTF-16 surrogates and NUL characters are not allowed in strings",
                )
        elif isinstance(value, bool) or value is None:
            continue
        elif isinstance(value, int):
            if not INT_MIN <= value <= INT_MAX:
                raise InvalidParameter(path, f"Invalid parameter '{path}': the number is out of range")
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise InvalidParameter(path, f"Invalid parameter '{path}': must be a finite number")
        elif isinstance(value, (dict, list)):
            if depth >= MAX_DEPTH:
                raise InvalidJson(
                    f"JSON is nested deeper than {MAX_DEPTH} levels", details={"parameter": path, "maxDepth": MAX_DEPTH}
                )
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if isinstance(key, str) and _bad_text(key):
                    name = _child(path, key)
                    raise InvalidParameter(
                        name,
                        f"Invalid parameter '{name}': lone UTF-16 surrogates and "
                        "NUL characters are not allowed in field names",
                    )
                stack.append((_child(path, key), item, depth + 1))


def json_loads(raw: bytes) -> Any:
    """Parse a request body; raise ApiError (400 INVALID_JSON / INVALID_PARAMETER, 413)."""
    if len(raw) > body_limit():
        raise PayloadTooLarge()
    try:
        text = raw.decode("utf-8")  # strictly: json.loads(bytes) would also guess UTF-16 and -32
    except UnicodeDecodeError as exc:
        raise InvalidJson(f"Request body is not valid UTF-8 (byte {exc.start})") from None
    try:
        data = json.loads(text)
    except RecursionError:
        raise InvalidJson(f"JSON is nested deeper than {MAX_DEPTH} levels", details={"maxDepth": MAX_DEPTH}) from None
    except ValueError as exc:  # JSONDecodeError, and integers of more than 4300 digits
        raise InvalidJson(f"Request body is not valid JSON: {exc}") from None
    check_value(data)
    return data


class Readable(Protocol):
    """What read_limited reads: a file, DRF's stream, or a Django HttpRequest."""

    def read(self, n: int = -1, /) -> bytes: ...


def read_limited(stream: Readable) -> bytes:
    """Read a body stream, raising 413 past the limit (chunked bodies have no Content-Length)."""
    raw = stream.read(body_limit() + 1)
    if len(raw) > body_limit():
        raise PayloadTooLarge()
    return raw


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser with the checks above."""

    def parse(
        self, stream: IO[bytes] | None, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None
    ) -> Any:
        if stream is None:
            return None
        return json_loads(read_limited(stream))
