"""Domain errors of this app (rendered by enigma_site.errors)."""

from __future__ import annotations

from enigma_site.errors import ApiError


class PolicyNotFound(ApiError):
    status_code = 404
    code = "POLICY_NOT_FOUND"
    default_message = "Policy not found"
