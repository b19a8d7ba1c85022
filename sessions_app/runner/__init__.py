"""The session runner and its parts (see session.py)."""

from __future__ import annotations

from .screencast import frames_group
from .session import SessionRunner
from .support import StartSteps, db

__all__ = ["SessionRunner", "StartSteps", "db", "frames_group"]
