"""The embeddable live view behind `streaming.webViewURL` (api.md §5.10)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.http import require_GET

from enigma_site.errors import ApiError

from ..schema import CHROME_HEIGHT, VIEW_HEIGHT, VIEW_WIDTH
from .access import viewer_authorize


@xframe_options_exempt  # made to be embedded in the customer's page (an iframe)
@require_GET
def viewer_page(request: HttpRequest, session_id: str) -> HttpResponse:
    """Render the viewer for a valid token (the token, not a login, is the credential)."""
    token = request.GET.get("token", "")
    try:
        session, control = viewer_authorize(session_id=session_id, token=token)
    except ApiError as exc:
        return render(request, "viewer.html", {"error": exc.message}, status=403)
    return render(request, "viewer.html", {
        "session_id": session.pk, "token": token, "control": control,
        "url": session.current_url, "title": session.current_title,
        "width": VIEW_WIDTH, "height": VIEW_HEIGHT, "chrome": CHROME_HEIGHT,
        "page_height": VIEW_HEIGHT - CHROME_HEIGHT,
    })
