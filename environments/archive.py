"""Profile archives: the `.tar.gz` a customer downloads and uploads (api.md §5.1).

Layout (ours; the documents describe a Chrome user-data directory, which isolated browser
contexts cannot load): a gzip tarball with `storage_state.json` at its root, in Playwright's
storage-state format (cookies, and per origin localStorage and IndexedDB). Other regular files
and directories are allowed and ignored, so an archive may carry notes or future additions.

Rejected: absolute paths, `..` components, links (symbolic or hard) that point outside the
root, devices and FIFOs, more than MAX_MEMBERS members, and a storage_state.json larger than
MAX_STATE_BYTES (a bound on decompression as well).
"""

from __future__ import annotations

import io
import json
import posixpath
import tarfile
from typing import IO, Any

STATE_NAME = "storage_state.json"
MAX_MEMBERS = 10_000
MAX_STATE_BYTES = 100 * 1024 * 1024


class ArchiveError(Exception):
    """The archive is unsafe or does not follow the layout; the message says why."""


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


def _open(fileobj: IO[bytes]) -> tarfile.TarFile:
    try:
        return tarfile.open(fileobj=fileobj, mode="r:gz")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ArchiveError("The file is not a valid .tar.gz archive") from exc


def read_profile_archive(fileobj: IO[bytes]) -> dict[str, Any]:
    """Validate a profile archive and return its storage state, or raise ArchiveError."""
    state_member: tarfile.TarInfo | None = None
    with _open(fileobj) as tar:
        try:
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
                    state_member = member
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise ArchiveError("The archive is corrupt") from exc
        if state_member is None:
            raise ArchiveError(f"The archive must contain {STATE_NAME} at its root")
        if state_member.size > MAX_STATE_BYTES:
            raise ArchiveError(f"{STATE_NAME} is larger than {MAX_STATE_BYTES // (1024 * 1024)} MB")
        extracted = tar.extractfile(state_member)
        assert extracted is not None
        raw = extracted.read(MAX_STATE_BYTES + 1)
    try:
        state = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArchiveError(f"{STATE_NAME} is not valid JSON") from exc
    return validate_storage_state(state)


def validate_storage_state(state: Any) -> dict[str, Any]:
    """Return `state` if it has Playwright's storage-state shape, else raise ArchiveError."""
    if not isinstance(state, dict):
        raise ArchiveError(f"{STATE_NAME} must be a JSON object")
    cookies = state.get("cookies", [])
    origins = state.get("origins", [])
    if not isinstance(cookies, list) or not all(isinstance(c, dict) and "name" in c for c in cookies):
        raise ArchiveError(f"{STATE_NAME}: 'cookies' must be an array of cookies")
    if not isinstance(origins, list) or not all(isinstance(o, dict) and "origin" in o for o in origins):
        raise ArchiveError(f"{STATE_NAME}: 'origins' must be an array of origins")
    return {"cookies": cookies, "origins": origins}


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
