"""Reads of environments and files, always scoped to a team."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from accounts.models import Team
from enigma_site.api import timestamp

from . import storage
from .errors import EnvironmentNotFound, FileNotFound
from .models import Environment, StoredFile


def _team_id(team: Team | int) -> int:
    return team if isinstance(team, int) else team.pk


def environment_get(*, team: Team | int, environment_id: str, noun: str = "Environment") -> Environment:
    """Return the team's environment, or raise EnvironmentNotFound (also for another team's)."""
    environment = Environment.objects.filter(pk=str(environment_id)[:64], team_id=_team_id(team)).first()
    if environment is None:
        raise EnvironmentNotFound(f"{noun} not found")
    return environment


def environment_list(*, team: Team | int) -> QuerySet[Environment]:
    return Environment.objects.filter(team_id=_team_id(team)).order_by("-created_at")


def environment_exists(*, team: Team | int, environment_id: str) -> bool:
    return Environment.objects.filter(pk=str(environment_id)[:64], team_id=_team_id(team)).exists()


def environment_storage_state(*, environment_id: str) -> dict[str, Any] | None:
    """The saved browser state of an environment, or None when it is empty."""
    return storage.state_read(environment_id)


def file_get(*, team: Team | int, file_id: str) -> StoredFile:
    stored = StoredFile.objects.filter(pk=str(file_id)[:64], team_id=_team_id(team)).first()
    if stored is None:
        raise FileNotFound()
    return stored


def environment_files(*, environment: Environment) -> QuerySet[StoredFile]:
    return StoredFile.objects.filter(environment=environment).order_by("created_at")


def files_missing(*, team: Team | int, file_ids: list[str]) -> list[str]:
    """The ids among `file_ids` that are not uploads of this team."""
    found = set(
        StoredFile.objects.filter(team_id=_team_id(team), pk__in=file_ids, kind=StoredFile.Kind.UPLOAD).values_list(
            "pk", flat=True
        )
    )
    return [f for f in file_ids if f not in found]


def file_paths(*, team: Team | int, file_ids: list[str]) -> list[str]:
    """Local paths of the team's files, in the order given; missing ones are left out."""
    rows = {f.pk: f for f in StoredFile.objects.filter(team_id=_team_id(team), pk__in=file_ids)}
    paths = []
    for file_id in file_ids:
        row = rows.get(file_id)
        if row is None:
            continue
        path = storage.absolute(row.path)  # in S3 mode, a local copy the browser can attach
        if path.exists():
            paths.append(str(path))
    return paths


def environment_body(environment: Environment) -> dict[str, Any]:
    return {
        "_id": environment.pk,
        "userId": str(environment.team_id),
        "name": environment.name,
        "description": environment.description,
        "status": environment.status,
        "blobSize": environment.blob_size,
        "blobUploadedAt": timestamp(environment.blob_uploaded_at),
        "lastUsedAt": timestamp(environment.last_used_at),
        "usageCount": environment.usage_count,
        "createdAt": timestamp(environment.created_at),
        "updatedAt": timestamp(environment.updated_at),
    }


def upload_body(environment: Environment) -> dict[str, Any]:
    return {
        "_id": environment.pk,
        "name": environment.name,
        "status": environment.status,
        "blobSize": environment.blob_size,
        "blobUploadedAt": timestamp(environment.blob_uploaded_at),
    }


def file_body(stored: StoredFile) -> dict[str, Any]:
    return {
        "fileId": stored.pk,
        "originalName": stored.original_name,
        "size": stored.size,
        "createdAt": timestamp(stored.created_at),
    }
