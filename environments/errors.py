"""Domain errors of this app (rendered by enigma_site.errors)."""

from __future__ import annotations

from enigma_site.errors import ApiError


class EnvironmentNotFound(ApiError):
    status_code = 404
    code = "ENVIRONMENT_NOT_FOUND"
    default_message = "Environment not found"


class EnvironmentLimitReached(ApiError):
    code = "ENVIRONMENT_LIMIT_REACHED"


class EnvironmentInUse(ApiError):
    status_code = 409
    code = "ENVIRONMENT_IN_USE"


class FileNotFound(ApiError):
    status_code = 404
    code = "FILE_NOT_FOUND"
    default_message = "File not found"


class FileTooLarge(ApiError):
    status_code = 413
    code = "FILE_TOO_LARGE"


class StorageQuotaExceeded(ApiError):
    status_code = 413
    code = "STORAGE_QUOTA_EXCEEDED"


class DownloadRefused(ApiError):
    """A download a page pushed is not kept (too large, or the session's count is reached)."""

    status_code = 413
    code = "DOWNLOAD_REFUSED"


class InvalidArchive(ApiError):
    code = "INVALID_ARCHIVE"


class NoProfileData(ApiError):
    code = "NO_PROFILE_DATA"
    default_message = "Profile has no data to download"
