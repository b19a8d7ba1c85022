"""Content-Security-Policy for the HTML pages (dashboard, viewer, admin).

The pages load scripts, styles and media (the dashboard's recording player) only from this
origin (no inline scripts; inline style attributes are allowed, the viewer sizes its window with
them) and Stripe.js where a top-up needs it. The viewer page is made to be embedded in customers'
pages, so any origin may frame it; every other page may be framed only by this origin.
`ENIGMA_CSP`: "on" (this policy), "off" (none), or a policy of your own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from .middleware import BothModes

EMBEDDABLE_PREFIXES = ("/view/",)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def build_policy(*, embeddable: bool) -> str:
    stripe = " ".join(
        sorted(
            {o for o in (_origin(settings.STRIPE_JS_URL), _origin(settings.STRIPE_API_BASE or "")) if o}
            | {"https://*.stripe.com"}
        )
    )
    ancestors = "*" if embeddable else "'self'"
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src 'self' {stripe}",
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data: blob:",
            "media-src 'self' blob:",
            f"connect-src 'self' ws: wss: {stripe}",
            f"frame-src 'self' {stripe}",
            f"frame-ancestors {ancestors}",
            "base-uri 'self'",
            "form-action 'self'",
            "object-src 'none'",
        ]
    )


class ContentSecurityPolicyMiddleware(BothModes):
    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        super().__init__(get_response)
        setting = (settings.ENIGMA_CSP or "").strip()
        if setting.lower() in ("", "off", "0", "false", "no"):
            self.policies: tuple[str, str] | None = None
        elif setting.lower() in ("on", "1", "true", "yes"):
            self.policies = (build_policy(embeddable=False), build_policy(embeddable=True))
        else:
            self.policies = (setting, setting)

    def after(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if self.policies is None or "Content-Security-Policy" in response:
            return response
        if not response.get("Content-Type", "").startswith("text/html"):
            return response
        embeddable = request.path.startswith(EMBEDDABLE_PREFIXES)
        response["Content-Security-Policy"] = self.policies[1 if embeddable else 0]
        return response
