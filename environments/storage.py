"""Where profiles and files live: on local disk under MEDIA_ROOT (the default) or in an
S3-compatible bucket (ENIGMA_STORAGE=s3, the ENIGMA_S3_* settings). Every read and write of blob data goes
through this module; the backend is chosen per call from the settings.

Blob names are "relative" paths such as ``files/<id>/<name>``; on S3 the key is
``ENIGMA_S3_PREFIX + relative``. Temporary files (``temp_dir``) are always local.

With S3, ``absolute(relative)`` still returns a local path: a copy of the object fetched into
``MEDIA_ROOT/.s3-cache`` (checked against the bucket on every call; a missing object gives a
path that does not exist). It is for callers that need a real file (the browser attaching an
upload). ``file_open``, ``file_exists`` and ``file_size`` work on either backend without a copy.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")
_CACHE_DIR = ".s3-cache"
_SPOOL_BYTES = 8 * 1024 * 1024


def safe_filename(name: str) -> str:
    """A file name with no directory part; characters other than letters, digits, "._-" and
    spaces become "_" (so "report (1).pdf" becomes "report _1_.pdf")."""
    base = os.path.basename(name.replace("\\", "/")).strip() or "file"
    base = _UNSAFE.sub("_", base).lstrip(".") or "file"
    return base[:200]


# ----- backend selection and S3 plumbing -------------------------------------------------------


STORAGE_BACKENDS = ("local", "s3")


def storage_backend() -> str:
    """Where blobs live: "local" (MEDIA_ROOT, the default) or "s3" (ENIGMA_STORAGE)."""
    value = str(settings.ENIGMA_STORAGE).strip().lower() or "local"
    if value not in STORAGE_BACKENDS:
        raise ImproperlyConfigured(f"ENIGMA_STORAGE must be one of {', '.join(STORAGE_BACKENDS)}, not {value!r}")
    return value


def _media_root() -> Path:
    return Path(settings.MEDIA_ROOT)


def _s3_prefix() -> str:
    """ENIGMA_S3_PREFIX as a key prefix: "enigma", "/enigma/" and "enigma/" all give "enigma/"."""
    prefix = str(settings.ENIGMA_S3_PREFIX).strip().strip("/")
    return f"{prefix}/" if prefix else ""


def _on_s3() -> bool:
    return storage_backend() == "s3"


def _local(relative: str) -> Path:
    root = _media_root().resolve()
    path = (root / relative).resolve()
    if root not in path.parents:
        raise ValueError(f"{relative!r} is outside MEDIA_ROOT")
    return path


def _key(relative: str) -> str:
    """The object key of `relative` (validated exactly as a local path would be)."""
    root = _media_root().resolve()
    return _s3_prefix() + _local(relative).relative_to(root).as_posix()


@functools.lru_cache(maxsize=8)
def _client_for(endpoint_url: str, access_key_id: str, secret_access_key: str, region: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url or None,
        aws_access_key_id=access_key_id or None,
        aws_secret_access_key=secret_access_key or None,
        region_name=region,
        # S3-compatible servers (MinIO, moto, ...) rarely resolve bucket subdomains.
        config=Config(s3={"addressing_style": "path" if endpoint_url else "auto"}, retries={"mode": "standard"}),
    )


def _s3() -> tuple[Any, str]:
    """(client, bucket) for the current settings."""
    bucket = settings.ENIGMA_S3_BUCKET
    if not bucket:
        raise ImproperlyConfigured("ENIGMA_STORAGE=s3 needs ENIGMA_S3_BUCKET")
    client = _client_for(
        settings.ENIGMA_S3_ENDPOINT_URL,
        settings.ENIGMA_S3_ACCESS_KEY_ID,
        settings.ENIGMA_S3_SECRET_ACCESS_KEY,
        settings.ENIGMA_S3_REGION,
    )
    return client, bucket


def _missing(exc: Exception) -> bool:
    code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
    return code in ("404", "NoSuchKey", "NotFound")


def _head(relative: str) -> dict[str, Any] | None:
    from botocore.exceptions import ClientError

    client, bucket = _s3()
    try:
        return client.head_object(Bucket=bucket, Key=_key(relative))
    except ClientError as exc:
        if _missing(exc):
            return None
        raise


def _remove_local(path: Path, stop: Path) -> None:
    """Delete `path` and its parent directory when that is left empty (never `stop` itself)."""
    path.unlink(missing_ok=True)
    parent = path.parent
    if parent != stop and parent.is_dir() and not any(parent.iterdir()):
        parent.rmdir()


def _cached(relative: str) -> Path:
    """A local copy of the object at `relative`, refreshed from the bucket when it differs."""
    path = _local(f"{_CACHE_DIR}/{relative}")
    head = _head(relative)
    if head is None:
        if path.exists():
            _remove_local(path, _local(_CACHE_DIR))
        return path
    if path.exists() and path.stat().st_size == head.get("ContentLength"):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    client, bucket = _s3()
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as handle:
        client.download_fileobj(bucket, _key(relative), handle)
    os.replace(handle.name, path)
    return path


# ----- the operations ----------------------------------------------------------------------


def absolute(relative: str) -> Path:
    """The local path of `relative` (on S3: of a fresh local copy; see the module docstring)."""
    if _on_s3():
        return _cached(relative)
    return _local(relative)


def _state_relative(environment_id: str) -> str:
    return f"environments/{environment_id}/storage_state.json"


def state_read(environment_id: str) -> dict[str, Any] | None:
    relative = _state_relative(environment_id)
    if _on_s3():
        from botocore.exceptions import ClientError

        client, bucket = _s3()
        try:
            body = client.get_object(Bucket=bucket, Key=_key(relative))["Body"]
        except ClientError as exc:
            if _missing(exc):
                return None
            raise
        with body:
            return json.loads(body.read())
    path = _local(relative)
    if not path.exists():
        return None
    return json.loads(path.read_text())


def state_write(environment_id: str, state: dict[str, Any]) -> int:
    """Replace the profile atomically; return its size in bytes."""
    relative = _state_relative(environment_id)
    data = json.dumps(state, separators=(",", ":")).encode()
    if _on_s3():
        client, bucket = _s3()  # a PUT replaces the object atomically
        client.put_object(Bucket=bucket, Key=_key(relative), Body=data, ContentType="application/json")
        return len(data)
    path = _local(relative)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as handle:
        handle.write(data)
    os.replace(handle.name, path)
    return len(data)


def environment_remove(environment_id: str) -> None:
    relative = f"environments/{environment_id}"
    if _on_s3():
        client, bucket = _s3()
        prefix = _key(relative) + "/"
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:  # a page holds at most 1000 keys, the limit of one delete_objects
                client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
        shutil.rmtree(_local(f"{_CACHE_DIR}/{relative}"), ignore_errors=True)
        return
    shutil.rmtree(_local(relative), ignore_errors=True)


def file_relative(file_id: str, name: str) -> str:
    return f"files/{file_id}/{safe_filename(name)}"


def file_write(relative: str, chunks: IO[bytes] | Any) -> None:
    if _on_s3():
        client, bucket = _s3()
        key = _key(relative)
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES, dir=str(temp_dir())) as spool:
            for chunk in chunks:
                spool.write(chunk)
            spool.seek(0)
            client.upload_fileobj(spool, bucket, key)
        return
    path = _local(relative)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        for chunk in chunks:
            out.write(chunk)


def file_move_in(relative: str, source: str) -> int:
    """Move the local file `source` into storage; return its size in bytes."""
    if _on_s3():
        client, bucket = _s3()
        size = os.path.getsize(source)
        client.upload_file(source, bucket, _key(relative))
        os.remove(source)
        return size
    path = _local(relative)
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(source, path)
    return path.stat().st_size


def file_remove(relative: str) -> None:
    if _on_s3():
        client, bucket = _s3()
        client.delete_object(Bucket=bucket, Key=_key(relative))  # no error when already gone
        _remove_local(_local(f"{_CACHE_DIR}/{relative}"), _local(_CACHE_DIR))
        return
    _remove_local(_local(relative), _media_root().resolve())


def file_exists(relative: str) -> bool:
    if _on_s3():
        return _head(relative) is not None
    return _local(relative).is_file()


def file_size(relative: str) -> int | None:
    """Size in bytes, or None when there is no such file."""
    if _on_s3():
        head = _head(relative)
        return None if head is None else int(head["ContentLength"])
    path = _local(relative)
    return path.stat().st_size if path.is_file() else None


def file_open(relative: str) -> IO[bytes]:
    """A binary stream of the file (close it); FileNotFoundError when there is none."""
    if _on_s3():
        from botocore.exceptions import ClientError

        client, bucket = _s3()
        try:
            return client.get_object(Bucket=bucket, Key=_key(relative))["Body"]
        except ClientError as exc:
            if _missing(exc):
                raise FileNotFoundError(relative) from exc
            raise
    return _local(relative).open("rb")


def temp_dir() -> Path:
    path = _media_root() / "tmp"
    path.mkdir(parents=True, exist_ok=True)
    return path
