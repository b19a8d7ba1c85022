"""Where profiles and files live on disk (under MEDIA_ROOT). S3-compatible storage is not
implemented; every read and write of blob data goes through this module so it can be added."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any

from . import conf

_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")


def safe_filename(name: str) -> str:
    """A file name with no directory part and no odd characters ("report (1).pdf" stays)."""
    base = os.path.basename(name.replace("\\", "/")).strip() or "file"
    base = _UNSAFE.sub("_", base).lstrip(".") or "file"
    return base[:200]


def absolute(relative: str) -> Path:
    root = conf.media_root().resolve()
    path = (root / relative).resolve()
    if root not in path.parents:
        raise ValueError(f"{relative!r} is outside MEDIA_ROOT")
    return path


def _state_relative(environment_id: str) -> str:
    return f"environments/{environment_id}/storage_state.json"


def state_read(environment_id: str) -> dict[str, Any] | None:
    path = absolute(_state_relative(environment_id))
    if not path.exists():
        return None
    return json.loads(path.read_text())


def state_write(environment_id: str, state: dict[str, Any]) -> int:
    """Replace the profile atomically; return its size in bytes."""
    path = absolute(_state_relative(environment_id))
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(state, separators=(",", ":")).encode()
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as handle:
        handle.write(data)
    os.replace(handle.name, path)
    return len(data)


def environment_remove(environment_id: str) -> None:
    shutil.rmtree(absolute(f"environments/{environment_id}"), ignore_errors=True)


def file_relative(file_id: str, name: str) -> str:
    return f"files/{file_id}/{safe_filename(name)}"


def file_write(relative: str, chunks: IO[bytes] | Any) -> None:
    path = absolute(relative)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        for chunk in chunks:
            out.write(chunk)


def file_move_in(relative: str, source: str) -> int:
    path = absolute(relative)
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(source, path)
    return path.stat().st_size


def file_remove(relative: str) -> None:
    path = absolute(relative)
    path.unlink(missing_ok=True)
    with_parent = path.parent
    if with_parent != conf.media_root().resolve() and not any(with_parent.iterdir()):
        with_parent.rmdir()


def temp_dir() -> Path:
    path = conf.media_root() / "tmp"
    path.mkdir(parents=True, exist_ok=True)
    return path
