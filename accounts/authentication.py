"""`Authorization: Bearer enig_...` for the REST API, with the contract's exact errors."""

from __future__ import annotations

from typing import Any

from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from enigma_site.errors import ApiError

from .models import ApiKey
from .services import api_key_touch, api_key_verify


class InvalidApiKey(ApiError):
    status_code = 401
    code = "INVALID_API_KEY"
    default_message = "Invalid or revoked API key"


class AccountDeactivated(ApiError):
    status_code = 403
    code = "ACCOUNT_DEACTIVATED"
    default_message = "Account is deactivated"


class ApiPrincipal:
    """What a request is authenticated as: a key of a team."""

    is_authenticated = True

    def __init__(self, api_key: ApiKey) -> None:
        self.api_key = api_key
        self.team = api_key.team

    def __str__(self) -> str:
        return f"key {self.api_key.prefix} of team {self.team.pk}"


def bearer_token(header: str) -> str | None:
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def authenticate_raw_key(raw: str) -> ApiPrincipal:
    """Return the principal for a raw key, or raise InvalidApiKey / AccountDeactivated."""
    api_key = api_key_verify(raw)
    if api_key is None:
        raise InvalidApiKey()
    if not api_key.team.is_active:
        raise AccountDeactivated()
    api_key_touch(api_key)
    return ApiPrincipal(api_key)


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header.strip():
            return None  # IsAuthenticated then answers 401 UNAUTHORIZED
        token = bearer_token(header)
        if token is None:
            raise InvalidApiKey()
        principal = authenticate_raw_key(token)
        return principal, principal.api_key

    def authenticate_header(self, request: Request) -> str:
        return "Bearer"
