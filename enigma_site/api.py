"""The base class of every authenticated API view (auth, per-team rate limit, headers) and
what every endpoint answers the same way: pagination, timestamps."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import ApiPrincipal

from .errors import ApiError, InvalidParameter
from .ratelimit import RateDecision, RateLimited, rate_limit_hit

MAX_PAGE = 1_000_000
BIGINT_MAX = 2**63 - 1
_INT_RE = re.compile(r"[+-]?\d{1,19}")


class ApiView(APIView):
    rate_scope: str | None = None
    _rate: RateDecision | None = None

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        self._rate = None
        if self.rate_scope:
            principal: ApiPrincipal = request.user  # type: ignore[assignment]  # set by ApiKeyAuthentication
            self._rate = rate_limit_hit(team_id=principal.team.pk, scope=self.rate_scope)
            if self._rate and not self._rate.allowed:
                raise RateLimited()

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)
        if self._rate is not None:
            for name, value in self._rate.headers().items():
                response[name] = value
        return response

    @property
    def principal(self) -> ApiPrincipal:
        return self.request.user  # type: ignore[return-value]


def ok(data: dict[str, Any] | None = None, status: int = 200, **fields: Any) -> Response:
    body: dict[str, Any] = {"success": True}
    body.update(data or {})
    body.update(fields)
    return Response(body, status=status)


def int_param(request: Request, name: str, default: int, *, low: int, high: int) -> int:
    """The integer query parameter `name` (default when absent); raise InvalidParameter unless
    it is a plain integer from `low` to `high` (`1e20` and 20-digit numbers are refused here,
    before they reach a database that cannot hold them)."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    text = raw.strip()
    if not _INT_RE.fullmatch(text):
        raise InvalidParameter(name, f"Invalid parameter '{name}': must be an integer")
    value = int(text)
    if not low <= value <= high:
        raise InvalidParameter(
            name, f"Invalid parameter '{name}': must be between {low} and {high}", value=value, min=low, max=high
        )
    return value


def page_params(request: Request, *, max_limit: int) -> tuple[int, int]:
    """`?page=` (from 1) and `?limit=` (1 to max_limit, default 20) of a list endpoint."""
    page = int_param(request, "page", 1, low=1, high=MAX_PAGE)
    return page, int_param(request, "limit", 20, low=1, high=max_limit)


def paginate(request: Request, query: QuerySet[Any], *, max_limit: int) -> tuple[list[Any], dict[str, int]]:
    """The `?page=&limit=` slice of `query` and its `pagination` object (api.md §5.8's keys:
    `{page, limit, total, totalPages}`)."""
    page, limit = page_params(request, max_limit=max_limit)
    total = query.count()
    rows = list(query[(page - 1) * limit : page * limit])
    return rows, {"page": page, "limit": limit, "total": total, "totalPages": -(-total // limit)}


def timestamp(value: datetime | None) -> str | None:
    """A time as the API writes it: ISO 8601 in UTC with `Z` (`2024-01-15T10:30:00.123456Z`)."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def object_body(data: Any) -> dict[str, Any]:
    """The request body, which must be a JSON object (else 400 INVALID_JSON)."""
    if not isinstance(data, dict):
        raise ApiError("Request body must be a JSON object", code="INVALID_JSON")
    return data


def public_base_url(request: Any) -> str:
    """Where clients reach us: ENIGMA_PUBLIC_URL, else the request's own scheme and host."""
    return settings.ENIGMA_PUBLIC_URL or f"{request.scheme}://{request.get_host()}"
