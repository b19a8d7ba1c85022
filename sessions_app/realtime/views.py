"""The embeddable live view behind `streaming.webViewURL` (api.md §5.10), and minting its links."""

from __future__ import annotations

from datetime import timedelta

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.http import require_GET
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from enigma_site.api import ApiView, ok, public_base_url
from enigma_site.errors import ApiError, InvalidParameter

from .. import selectors
from ..schema import CHROME_HEIGHT, VIEW_HEIGHT, VIEW_WIDTH
from ..streaming import VIEWER_TOKEN_MAX_AGE_S, viewer_token_create
from .access import viewer_grant_read, without_session_id
from .serializers import ViewerLinkRequestSerializer, ViewerLinkSerializer


@xframe_options_exempt  # made to be embedded in the customer's page (an iframe)
@require_GET
def viewer_page(request: HttpRequest, token: str) -> HttpResponse:
    """Render the viewer for a valid token (the token, not a login, is the credential; the
    page never learns the session id)."""
    try:
        session, control = viewer_grant_read(token)
    except ApiError as exc:
        return render(request, "viewer.html", {"error": exc.message}, status=403)
    return render(
        request,
        "viewer.html",
        {
            "token": token,
            "control": control,
            "url": without_session_id(session.current_url, session.pk),
            "title": without_session_id(session.current_title, session.pk),
            "width": VIEW_WIDTH,
            "height": VIEW_HEIGHT,
            "chrome": CHROME_HEIGHT,
            "page_height": VIEW_HEIGHT - CHROME_HEIGHT,
        },
    )


class ViewerLinkApi(ApiView):
    """Mint a viewer link of a session: read-only unless `control` (body: {control?, ttlSeconds?})."""

    @extend_schema(request=ViewerLinkRequestSerializer, responses={200: ViewerLinkSerializer})
    def post(self, request: Request, session_id: str) -> Response:
        session = selectors.session_get(team=self.principal.team, session_id=session_id)
        body = request.data if isinstance(request.data, dict) else {}
        control = body.get("control", False)
        if not isinstance(control, bool):
            raise InvalidParameter("control", "Invalid parameter 'control': must be true or false")
        ttl = body.get("ttlSeconds", VIEWER_TOKEN_MAX_AGE_S)
        if isinstance(ttl, bool) or not isinstance(ttl, int) or not 60 <= ttl <= VIEWER_TOKEN_MAX_AGE_S:
            raise InvalidParameter(
                "ttlSeconds", f"Invalid parameter 'ttlSeconds': an integer from 60 to {VIEWER_TOKEN_MAX_AGE_S}"
            )
        token = viewer_token_create(session_id=session.pk, control=control, ttl_s=ttl)
        expires = timezone.now() + timedelta(seconds=ttl)
        return ok(
            webViewURL=f"{public_base_url(request)}/view/{token}",
            control=control,
            expiresAt=expires.isoformat().replace("+00:00", "Z"),
        )


viewer_link = ViewerLinkApi.as_view()
