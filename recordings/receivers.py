"""What the recordings app does when the sessions app announces a session (sessions_app.signals)."""

from __future__ import annotations

from typing import Any

from .tasks import recording_settle_dispatch


def session_swept(sender: Any, *, session_id: str, host: str, **kwargs: Any) -> None:
    """The sweep ended a session its runner never saw end: the host with its frames encodes them."""
    recording_settle_dispatch(session_id=session_id, host=host)
