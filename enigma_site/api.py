"""The base class of every authenticated API view: auth, per-team rate limit, headers."""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import ApiPrincipal

from .ratelimit import RateDecision, RateLimited, rate_limit_hit


class ApiView(APIView):
    rate_scope: str | None = None
    _rate: RateDecision | None = None

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        self._rate = None
        if self.rate_scope:
            principal: ApiPrincipal = request.user
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
