"""Settings of this app, read from Django settings when present, else from the environment.

They live here rather than in enigma_site/settings.py only because that module is shared; each
one can move there unchanged (same name).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.conf import settings


def _get(name: str, default: Any, cast: type) -> Any:
    if hasattr(settings, name):
        return getattr(settings, name)
    raw = os.environ.get(name, "")
    return cast(raw) if raw.strip() else default


def media_root() -> Path:
    return Path(settings.MEDIA_ROOT)


def max_upload_bytes() -> int:
    """Per file of POST /files/upload (ENIGMA_MAX_UPLOAD_MB, default 50)."""
    return int(_get("ENIGMA_MAX_UPLOAD_MB", 50, float) * 1024 * 1024)


def max_profile_bytes() -> int:
    """A profile archive (ENIGMA_MAX_PROFILE_MB, default 500 as documented)."""
    return int(_get("ENIGMA_MAX_PROFILE_MB", 500, float) * 1024 * 1024)


def max_profile_inflated_bytes() -> int:
    """How far a profile archive may decompress before it is refused (a gzip bomb stops here;
    ENIGMA_MAX_PROFILE_INFLATED_MB, default 200)."""
    return int(_get("ENIGMA_MAX_PROFILE_INFLATED_MB", 200, float) * 1024 * 1024)


def profile_upload_rate() -> tuple[int, float]:
    """Profile uploads per team and window (api.md §6.3: 100 per 15 minutes)."""
    return (int(_get("ENIGMA_PROFILE_UPLOAD_RATE_LIMIT", 100, int)),
            float(_get("ENIGMA_PROFILE_UPLOAD_RATE_WINDOW_S", 900, float)))


def orphan_file_ttl_s() -> float:
    return float(_get("ENIGMA_ORPHAN_FILE_TTL_S", 3600, float))


def max_download_bytes() -> int:
    """One file a page pushes to the browser (ENIGMA_MAX_DOWNLOAD_MB, default 100)."""
    return int(_get("ENIGMA_MAX_DOWNLOAD_MB", 100, float) * 1024 * 1024)


def max_downloads_per_session() -> int:
    """Downloads kept per session; later ones are refused (ENIGMA_MAX_DOWNLOADS_PER_SESSION, 50)."""
    return int(_get("ENIGMA_MAX_DOWNLOADS_PER_SESSION", 50, int))


def download_retention_s() -> float:
    """Downloads are deleted this long after they were made (ENIGMA_DOWNLOAD_RETENTION_S, 7 days)."""
    return float(_get("ENIGMA_DOWNLOAD_RETENTION_S", 7 * 86400, float))


def team_storage_bytes() -> int:
    """All stored files of a team, uploads and downloads (ENIGMA_TEAM_STORAGE_MB, default 5120)."""
    return int(_get("ENIGMA_TEAM_STORAGE_MB", 5120, float) * 1024 * 1024)


def webhook_retry_base_s() -> float:
    """First retry delay; it doubles per attempt (ENIGMA_WEBHOOK_RETRY_BASE_S, default 10)."""
    return float(_get("ENIGMA_WEBHOOK_RETRY_BASE_S", 10, float))


def webhook_max_attempts() -> int:
    return int(_get("ENIGMA_WEBHOOK_MAX_ATTEMPTS", 6, int))


def webhook_timeout_s() -> float:
    return float(_get("ENIGMA_WEBHOOK_TIMEOUT_S", 30, float))


def webhook_tolerance_s() -> int:
    """How old a signature timestamp a receiver should accept (replay window)."""
    return int(_get("ENIGMA_WEBHOOK_TOLERANCE_S", 300, int))


def trigger_min_interval_s() -> int:
    return int(_get("ENIGMA_TRIGGER_MIN_INTERVAL_S", 60, int))


def max_triggers_per_team() -> int:
    return int(_get("ENIGMA_MAX_TRIGGERS", 50, int))


def managed_proxy_url() -> str:
    """A provider's proxy URL (http://user:pass@host:port) for source "WebRun"; empty = none."""
    return str(_get("ENIGMA_MANAGED_PROXY_URL", "", str))


def allowed_private_hosts() -> frozenset[str]:
    return frozenset(settings.ENIGMA_ALLOWED_PRIVATE_HOSTS)


# ----- blob storage (environments/storage.py) -------------------------------------------------

STORAGE_BACKENDS = ("local", "s3")


def storage_backend() -> str:
    """Where blobs live: "local" (MEDIA_ROOT, the default) or "s3" (ENIGMA_STORAGE)."""
    value = str(_get("ENIGMA_STORAGE", "local", str)).strip().lower() or "local"
    if value not in STORAGE_BACKENDS:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(f"ENIGMA_STORAGE must be one of {', '.join(STORAGE_BACKENDS)}, not {value!r}")
    return value


def s3_endpoint_url() -> str:
    """An S3-compatible server (MinIO, R2, ...); empty = AWS S3 itself (ENIGMA_S3_ENDPOINT_URL)."""
    return str(_get("ENIGMA_S3_ENDPOINT_URL", "", str)).strip()


def s3_bucket() -> str:
    return str(_get("ENIGMA_S3_BUCKET", "", str)).strip()


def s3_access_key_id() -> str:
    """Empty = boto3's own credential chain (environment, instance role, ...)."""
    return str(_get("ENIGMA_S3_ACCESS_KEY_ID", "", str)).strip()


def s3_secret_access_key() -> str:
    return str(_get("ENIGMA_S3_SECRET_ACCESS_KEY", "", str)).strip()


def s3_region() -> str:
    return str(_get("ENIGMA_S3_REGION", "us-east-1", str)).strip() or "us-east-1"


def s3_prefix() -> str:
    """Key prefix inside the bucket, e.g. "enigma/" (ENIGMA_S3_PREFIX, default none)."""
    prefix = str(_get("ENIGMA_S3_PREFIX", "", str)).strip().strip("/")
    return f"{prefix}/" if prefix else ""
