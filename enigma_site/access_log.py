"""Keep credentials out of the access log: API keys (`/mcp/<key>`, `?apiKey=`), viewer tokens
(`/view/<token>`, `?token=`) and session ids (which let their holder watch a session).

Daphne writes its access log itself (daphne.access.AccessLogGenerator, to stdout or
`--access-log`), from the raw request line, with no logging hook an application could use; so
`install()`, run when Daphne imports our ASGI application, swaps in a subclass that redacts each
line before writing it. `RedactFilter` does the same for log records that quote request paths
(django.request's "Not Found: /task/<id>/<id>").
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any
from urllib.parse import unquote

from daphne.access import AccessLogGenerator

REDACTED = "[redacted]"
_SECRET_PARAMS = {"apikey", "api_key", "key", "token", "access_token", "sessionid", "session_id"}
_PATTERNS = [
    # A path segment that is a credential: /mcp/<key>, /view/<token>, /ws/view/<token>/, /cdp/<token>.
    (re.compile(r"(/(?:mcp|view|cdp)/)[^/?#\s\"]+"), r"\1" + REDACTED),
    (re.compile(r"enig_[A-Za-z0-9_\-]+"), "enig_" + REDACTED),
    (re.compile(r"vt_[A-Za-z0-9_\-]{8,}"), "vt_" + REDACTED),
    # Session and task ids: 32 hex digits (sessions_app.models.new_id).
    (re.compile(r"(?<![0-9A-Fa-f])[0-9a-f]{32}(?![0-9A-Fa-f])"), "[id]"),
]
_QUERY = re.compile(r"([?&])([^=&\s\"#]+)=([^&\s\"#]*)")


def _query_param(match: re.Match[str]) -> str:
    name = match.group(2)
    if unquote(name).lower() in _SECRET_PARAMS:
        return f"{match.group(1)}{name}={REDACTED}"
    return match.group(0)


def redact(text: str) -> str:
    """`text` (a request line, a log message) with credentials and session ids masked."""
    text = _QUERY.sub(_query_param, text)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactFilter(logging.Filter):
    """Redact a record's message (for loggers that quote request paths)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class RedactingAccessLog(AccessLogGenerator):
    """Daphne's NCSA-style access log, redacted."""

    def write_entry(self, host: Any, date: Any, request: str, *args: Any, **kwargs: Any) -> None:
        super().write_entry(host, date, redact(request), *args, **kwargs)


def install() -> None:
    """Redact django.request's records, and make Daphne's command line (when it is what runs us)
    write a redacted access log. Call after Django's logging is configured."""
    request_logger = logging.getLogger("django.request")
    if not any(isinstance(f, RedactFilter) for f in request_logger.filters):
        request_logger.addFilter(RedactFilter())
    cli = sys.modules.get("daphne.cli")
    if cli is not None:
        # daphne.cli builds its logger from this module-level name after importing the app.
        cli.AccessLogGenerator = RedactingAccessLog  # type: ignore[attr-defined]
