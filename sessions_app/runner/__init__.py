"""The session runner and its parts (see session.py)."""

from __future__ import annotations

from .session import SessionRunner
from .support import StartSteps, db

__all__ = ["SessionRunner", "StartSteps", "db"]
