"""The per-session command stream in Redis: web and sockets write, the session runner reads.

A stream keeps commands ordered and survives a web restart; the runner remembers the last id it
applied on the session row, so a worker that takes an orphaned session over resumes there.
Secret values travel only here (never in the database): the entry is deleted once its task has
ended, the stream when the session ends (`session_end`), and every push renews a TTL no session
outlives, so a stream nobody deletes still goes.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings

from enigma_site.redis import get_redis

from .models import BrowserSession

STREAM_MAXLEN = 1000


def stream_key(session_id: str) -> str:
    return f"enigma:cmd:{session_id}"


def stream_ttl_s() -> int:
    """Longer than any session lives: the lifetime cap, then an orphan's grace period."""
    return int(settings.ENIGMA_SESSION_MAX_LIFETIME_S + settings.ENIGMA_ORPHAN_GRACE_S) + 60


def command_push(*, session: BrowserSession | str, kind: str, data: dict[str, Any]) -> str:
    """Append a command for the session's runner; returns the stream entry id."""
    session_id = session if isinstance(session, str) else session.pk
    pipe = get_redis().pipeline()
    pipe.xadd(stream_key(session_id), {"kind": kind, "data": json.dumps(data)}, maxlen=STREAM_MAXLEN, approximate=True)
    pipe.expire(stream_key(session_id), stream_ttl_s())
    entry_id, _ = pipe.execute()
    return str(entry_id)


def commands_delete(session_id: str) -> None:
    get_redis().delete(stream_key(session_id))
