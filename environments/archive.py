"""Profile archives: the `.tar.gz` a customer downloads and uploads (api.md §5.1).

Layout (ours; the documents describe a Chrome user-data directory, which isolated browser
contexts cannot load): a gzip tarball with `storage_state.json` at its root, in Playwright's
storage-state format (cookies, and per origin localStorage and IndexedDB). Other regular files
and directories are allowed and ignored, so an archive may carry notes or future additions.

Rejected: absolute paths, `..` components, links (symbolic or hard) that point outside the
root, devices and FIFOs, more than MAX_MEMBERS members, a storage_state.json larger than
MAX_STATE_BYTES, an archive that inflates past `max_inflated` bytes (a gzip bomb stops there,
after reading no more than that), and a storage state that would not load (storage_state.py).
"""

from __future__ import annotations

import gzip
import io
import json
import posixpath
import tarfile
import zlib
from typing import IO, Any

from .storage_state import StateInvalid, check_state

STATE_NAME = "storage_state.json"
MAX_MEMBERS = 10_000
MAX_STATE_BYTES = 100 * 1024 * 1024


class ArchiveError(Exception):
    """The archive is unsafe or does not follow the layout; the message says why."""


class _Inflated(io.RawIOBase):
    """The decompressed stream of a gzip file that refuses to inflate past `limit` bytes."""

    def __init__(self, fileobj: IO[bytes], limit: int) -> None:
        self._gzip = gzip.GzipFile(fileobj=fileobj, mode="rb")
        self._limit = limit
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._gzip.read(min(len(buffer), self._limit + 1 - self.count))
        self.count += len(data)
        if self.count > self._limit:
            raise ArchiveError(f"The archive inflates to more than {self._limit // (1024 * 1024)} MB")
        buffer[: len(data)] = data
        return len(data)


def _safe_name(name: str) -> str:
    if name.startswith("/") or (len(name) > 1 and name[1] == ":") or "\\" in name:
        raise ArchiveError(f"Archive member {name!r} has an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(f"Archive member {name!r} leaves the archive root")
    return "/".join(parts)


def _check_link(member: tarfile.TarInfo, name: str) -> None:
    target = member.linkname
    if target.startswith("/"):
        raise ArchiveError(f"Archive link {member.name!r} points outside the archive root")
    base = posixpath.dirname(name) if member.issym() else ""
    resolved = posixpath.normpath(posixpath.join(base, target))
    if resolved == ".." or resolved.startswith("../"):
        raise ArchiveError(f"Archive link {member.name!r} points outside the archive root")


def read_profile_archive(fileobj: IO[bytes], *, max_inflated: int) -> dict[str, Any]:
    """Validate a profile archive and return its storage state, or raise ArchiveError.

    The tarball is read as a stream: nothing is decompressed past `max_inflated` bytes.
    """
    raw: bytes | None = None
    inflated = _Inflated(fileobj, max_inflated)
    try:
        with tarfile.open(fileobj=inflated, mode="r|") as tar:
            for count, member in enumerate(tar, 1):
                if count > MAX_MEMBERS:
                    raise ArchiveError(f"The archive has more than {MAX_MEMBERS} members")
                name = _safe_name(member.name)
                if member.issym() or member.islnk():
                    _check_link(member, name)
                    continue
                if not (member.isfile() or member.isdir()):
                    raise ArchiveError(f"Archive member {member.name!r} is not a regular file or directory")
                if name == STATE_NAME and member.isfile():
                    if member.size > MAX_STATE_BYTES:
                        raise ArchiveError(f"{STATE_NAME} is larger than {MAX_STATE_BYTES // (1024 * 1024)} MB")
                    extracted = tar.extractfile(member)
                    assert extracted is not None
                    raw = extracted.read(MAX_STATE_BYTES + 1)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        if inflated.count == 0:
            raise ArchiveError("The file is not a valid .tar.gz archive") from exc
        raise ArchiveError("The archive is corrupt") from exc
    if raw is None:
        raise ArchiveError(f"The archive must contain {STATE_NAME} at its root")
    try:
        state = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArchiveError(f"{STATE_NAME} is not valid JSON") from exc
    except RecursionError as exc:
        raise ArchiveError(f"{STATE_NAME} nests too deeply") from exc
    return validate_storage_state(state)


def validate_storage_state(state: Any) -> dict[str, Any]:
    """Return `state` normalised if Playwright can load it, else raise ArchiveError saying where."""
    try:
        return check_state(state)
    except StateInvalid as exc:
        raise ArchiveError(str(exc)) from exc


def build_profile_archive(state: dict[str, Any]) -> bytes:
    """Return the .tar.gz bytes of a profile holding `state`."""
    data = json.dumps(state, separators=(",", ":")).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        info = tarfile.TarInfo(STATE_NAME)
        info.size = len(data)
        info.mode = 0o600
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()
