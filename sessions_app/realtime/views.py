"""The embeddable live view behind `streaming.webViewURL` (api.md §5.10)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.http import require_GET

from enigma_site.errors import ApiError

from ..schema import CHROME_HEIGHT, VIEW_HEIGHT, VIEW_WIDTH
from .access import viewer_grant_read, without_session_id


@xframe_options_exempt  # made to be embedded in the customer's page (an iframe)
@require_GET
def viewer_page(request: HttpRequest, token: str) -> HttpResponse:
    """Render the viewer for a valid token (the token, not a login, is the credential; the
    page never learns the session id)."""
    try:
        session, control = viewer_grant_read(token)
    except ApiError as exc:
        return render(request, "viewer.html", {"error": exc.message}, status=403)
    return render(request, "viewer.html", {
        "token": token, "control": control,
        "url": without_session_id(session.current_url, session.pk),
        "title": without_session_id(session.current_title, session.pk),
        "width": VIEW_WIDTH, "height": VIEW_HEIGHT, "chrome": CHROME_HEIGHT,
        "page_height": VIEW_HEIGHT - CHROME_HEIGHT,
    })
