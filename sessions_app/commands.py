"""The per-session command stream in Redis: web and sockets write, the session runner reads.

A stream keeps commands ordered and survives a web restart; the runner remembers the last id it
applied on the session row, so a worker that takes an orphaned session over resumes there.
Secret values travel only here (never in the database) and the entry is deleted once its task
has ended.
"""

from __future__ import annotations

import json
from typing import Any

from enigma_site.redis import get_redis

from .models import BrowserSession

STREAM_MAXLEN = 1000


def stream_key(session_id: str) -> str:
    return f"enigma:cmd:{session_id}"


def command_push(*, session: BrowserSession | str, kind: str, data: dict[str, Any]) -> str:
    """Append a command for the session's runner; returns the stream entry id."""
    session_id = session if isinstance(session, str) else session.pk
    return get_redis().xadd(
        stream_key(session_id), {"kind": kind, "data": json.dumps(data)},
        maxlen=STREAM_MAXLEN, approximate=True,
    )


def commands_delete(session_id: str) -> None:
    get_redis().delete(stream_key(session_id))
