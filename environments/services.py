"""Writes of environments and files: one function per use case."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import timedelta
from typing import IO, Any, cast

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import F, Sum
from django.utils import timezone

from accounts.models import Team
from enigma_site.errors import ApiError

from . import storage
from .archive import ArchiveError, read_profile_archive
from .errors import (
    DownloadRefused,
    EnvironmentInUse,
    EnvironmentLimitReached,
    EnvironmentNotFound,
    FileTooLarge,
    InvalidArchive,
    StorageQuotaExceeded,
)
from .models import Environment, StoredFile

logger = logging.getLogger(__name__)

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")


def _mb(value: float) -> int:
    return int(value * 1024 * 1024)


@transaction.atomic
def environment_create(*, team: Team, name: str, description: str = "", noun: str = "Environment") -> Environment:
    """Create an empty environment; at most Environment.MAX_PER_TEAM per team."""
    Team.objects.select_for_update().filter(pk=team.pk).first()  # serialises concurrent creates
    if Environment.objects.filter(team=team).count() >= Environment.MAX_PER_TEAM:
        raise EnvironmentLimitReached(
            f"Maximum of {Environment.MAX_PER_TEAM} {noun.lower()}s allowed",
            details={"limit": Environment.MAX_PER_TEAM},
        )
    return Environment.objects.create(team=team, name=name, description=description)


def environment_delete(*, environment: Environment) -> None:
    """Delete the environment, its profile and all its files."""
    files = list(StoredFile.objects.filter(environment=environment).values_list("path", flat=True))
    environment_id = environment.pk
    environment.delete()
    for path in files:
        storage.file_remove(path)
    storage.environment_remove(environment_id)


HolderCheck = Callable[[str], bool]


def _any_holder_busy(session_id: str) -> bool:
    return bool(session_id)


# Whether the session holding an environment still needs it. This app knows no sessions: the
# sessions app installs its answer (environment_holder_check_set) when it is ready; until then
# every holder counts as busy.
_holder_check: HolderCheck = _any_holder_busy


def environment_holder_check_set(check: HolderCheck) -> None:
    global _holder_check
    _holder_check = check


def _holder_busy(session_id: str) -> bool:
    return bool(session_id) and _holder_check(session_id)


def _in_use(environment_id: str, holder: str) -> EnvironmentInUse:
    return EnvironmentInUse(
        f"Environment {environment_id} is in use by session {holder}; end that session first",
        details={"environmentId": environment_id, "sessionId": holder},
    )


def environment_claim(*, environment_id: str, session_id: str) -> None:
    """Make `session_id` the one session using the environment, or raise EnvironmentInUse (409).

    One live session per environment, so no session's saved state overwrites another's: the
    claim is a conditional UPDATE on the holder seen, so two concurrent claims cannot both win.
    """
    for _ in range(3):
        holder = Environment.objects.filter(pk=environment_id).values_list("session_id", flat=True).first()
        if holder is None:
            raise EnvironmentNotFound()
        if holder == session_id:
            return
        if _holder_busy(holder):
            raise _in_use(environment_id, holder)
        if Environment.objects.filter(pk=environment_id, session_id=holder).update(session_id=session_id) == 1:
            return
    raise _in_use(environment_id, "another session")


def environment_profile_upload(*, environment: Environment, upload: UploadedFile | None) -> Environment:
    """Replace the profile with the archive's storage state; the environment becomes ready.

    Refused with 409 ENVIRONMENT_IN_USE while a session uses the environment (its end would
    overwrite the upload)."""
    if upload is None:
        raise InvalidArchive("No file provided", details={"parameter": "file"})
    name = (upload.name or "").lower()
    if not name.endswith(ARCHIVE_SUFFIXES):
        raise InvalidArchive("Only .tar.gz files are allowed", details={"parameter": "file"})
    limit = _mb(settings.ENIGMA_MAX_PROFILE_MB)
    if upload.size is not None and upload.size > limit:
        raise FileTooLarge(
            f"Profile archives are limited to {limit // (1024 * 1024)} MB",
            details={"parameter": "file", "max": limit, "size": upload.size},
        )
    try:
        state = read_profile_archive(
            cast(IO[bytes], upload.file), max_inflated=_mb(settings.ENIGMA_MAX_PROFILE_INFLATED_MB)
        )
    except ArchiveError as exc:
        raise InvalidArchive(str(exc), details={"parameter": "file"}) from exc
    holder = Environment.objects.filter(pk=environment.pk).values_list("session_id", flat=True).first() or ""
    if _holder_busy(holder):
        raise _in_use(environment.pk, holder)
    # Release a stale holder first: a session claiming from now on loads this upload.
    Environment.objects.filter(pk=environment.pk, session_id=holder).update(session_id="")
    storage.state_write(environment.pk, state)
    now = timezone.now()
    Environment.objects.filter(pk=environment.pk).update(
        status=Environment.Status.READY, blob_size=upload.size or 0, blob_uploaded_at=now, updated_at=now
    )
    environment.refresh_from_db()
    return environment


def environment_mark_used(*, environment_id: str) -> None:
    Environment.objects.filter(pk=environment_id).update(usage_count=F("usage_count") + 1, last_used_at=timezone.now())


def environment_state_save(*, environment_id: str, state: dict[str, Any] | None, session_id: str = "") -> bool:
    """Save a session's final browser state into its environment and release the environment.

    Only the session holding the environment saves (or any session when none holds it, as for
    sessions started before holders existed); a deleted environment is skipped. Returns whether
    the state was written.
    """
    holder = Environment.objects.filter(pk=environment_id).values_list("session_id", flat=True).first()
    if holder is None:
        return False
    if holder not in ("", session_id):
        logger.warning("session %s did not save environment %s: it is held by %s", session_id, environment_id, holder)
        return False
    saved = False
    if state is not None:
        size = storage.state_write(environment_id, state)
        Environment.objects.filter(pk=environment_id).update(
            status=Environment.Status.READY, blob_size=size, updated_at=timezone.now()
        )
        saved = True
    if holder:
        Environment.objects.filter(pk=environment_id, session_id=holder).update(session_id="")
    return saved


def _file_reserve(stored: StoredFile, *, parameter: str) -> None:
    """Save the row of a file about to be written if the team's storage quota has room for it
    (uploads and downloads count alike), else raise StorageQuotaExceeded (413). The team row
    lock makes concurrent writers of one team check one after the other."""
    limit = _mb(settings.ENIGMA_TEAM_STORAGE_MB)
    with transaction.atomic():
        Team.objects.select_for_update().filter(pk=stored.team_id).first()
        used = StoredFile.objects.filter(team_id=stored.team_id).aggregate(total=Sum("size"))["total"] or 0
        if used + stored.size > limit:
            raise StorageQuotaExceeded(
                f"Storage quota exceeded: {used} of {limit} bytes used, this file needs {stored.size}; "
                "delete files (DELETE /files/<id>) to make room",
                details={"parameter": parameter, "used": used, "limit": limit, "size": stored.size},
            )
        stored.save()


def file_upload(*, team: Team, environment: Environment | None, upload: UploadedFile) -> StoredFile:
    """Store an uploaded file; without an environment it is an orphan (deleted after an hour)."""
    limit = _mb(settings.ENIGMA_MAX_UPLOAD_MB)
    if upload.size is not None and upload.size > limit:
        raise FileTooLarge(
            f"File {upload.name} exceeds the maximum size of {limit // (1024 * 1024)} MB",
            details={"parameter": "files", "max": limit, "size": upload.size},
        )
    stored = StoredFile(
        team=team,
        environment=environment,
        kind=StoredFile.Kind.UPLOAD,
        original_name=storage.safe_filename(upload.name or "file"),
        size=upload.size or 0,
    )
    stored.path = storage.file_relative(stored.pk, stored.original_name)
    _file_reserve(stored, parameter="files")
    try:
        storage.file_write(stored.path, upload.chunks())
    except OSError:
        stored.delete()
        raise
    return stored


def file_delete(*, stored: StoredFile) -> None:
    path = stored.path
    stored.delete()
    storage.file_remove(path)


def files_promote(*, team_id: int, file_ids: list[str], environment_id: str) -> int:
    """Orphan uploads used in a session with an environment join it and are kept (api.md §5.2)."""
    return StoredFile.objects.filter(
        team_id=team_id, pk__in=file_ids, environment__isnull=True, kind=StoredFile.Kind.UPLOAD
    ).update(environment_id=environment_id)


def file_store_download(
    *,
    team_id: int,
    session_id: str,
    task_id: str,
    environment_id: str | None,
    source_url: str,
    filename: str,
    temp_path: str,
) -> StoredFile:
    """Keep a file the browser downloaded during a task (moved in from a temporary path).

    Refused, and the temporary file deleted, when it is larger than ENIGMA_MAX_DOWNLOAD_MB, when
    the session already kept ENIGMA_MAX_DOWNLOADS_PER_SESSION files (DownloadRefused), or when
    the team's storage quota has no room (StorageQuotaExceeded).
    """
    try:
        size = os.path.getsize(temp_path)
        limit = _mb(settings.ENIGMA_MAX_DOWNLOAD_MB)
        if size > limit:
            raise DownloadRefused(
                f"Download {filename!r} is larger than {limit // (1024 * 1024)} MB",
                details={"max": limit, "size": size},
            )
        count = int(settings.ENIGMA_MAX_DOWNLOADS_PER_SESSION)
        if StoredFile.objects.filter(session_id=session_id, kind=StoredFile.Kind.DOWNLOAD).count() >= count:
            raise DownloadRefused(f"This session already kept {count} downloads", details={"max": count})
        stored = StoredFile(
            team_id=team_id,
            environment_id=environment_id,
            kind=StoredFile.Kind.DOWNLOAD,
            original_name=storage.safe_filename(filename),
            session_id=session_id,
            task_id=task_id,
            source_url=source_url[:4000],
            size=size,
        )
        stored.path = storage.file_relative(stored.pk, stored.original_name)
        _file_reserve(stored, parameter="download")
    except ApiError:
        os.remove(temp_path)
        raise
    try:
        storage.file_move_in(stored.path, temp_path)
    except OSError:
        stored.delete()
        raise
    return stored


def files_delete_expired_downloads(*, now: Any = None) -> int:
    """Delete downloads older than ENIGMA_DOWNLOAD_RETENTION_S (seven days by default)."""
    cutoff = (now or timezone.now()) - timedelta(seconds=settings.ENIGMA_DOWNLOAD_RETENTION_S)
    count = 0
    for stored in StoredFile.objects.filter(kind=StoredFile.Kind.DOWNLOAD, created_at__lt=cutoff):
        file_delete(stored=stored)
        count += 1
    if count:
        logger.info("deleted %s expired downloads", count)
    return count


def files_delete_orphans(*, now: Any = None) -> int:
    """Delete uploads that never joined an environment within the TTL (one hour by default)."""
    cutoff = (now or timezone.now()) - timedelta(seconds=settings.ENIGMA_ORPHAN_FILE_TTL_S)
    count = 0
    for stored in StoredFile.objects.filter(
        kind=StoredFile.Kind.UPLOAD, environment__isnull=True, created_at__lt=cutoff
    ):
        file_delete(stored=stored)
        count += 1
    if count:
        logger.info("deleted %s orphan files", count)
    return count
