"""The one place that builds the Stripe SDK client, pointed at STRIPE_API_BASE when set
(localstripe in development and tests)."""

from __future__ import annotations

import stripe
from django.conf import settings

from enigma_site.errors import ApiError


class StripeNotConfigured(ApiError):
    status_code = 503
    code = "PAYMENTS_UNAVAILABLE"
    default_message = "Payments are not configured"


def stripe_client() -> stripe.StripeClient:
    """A StripeClient for STRIPE_API_KEY, or raise StripeNotConfigured."""
    if not settings.STRIPE_API_KEY:
        raise StripeNotConfigured()
    base_addresses: stripe._base_address.BaseAddresses = {}
    if settings.STRIPE_API_BASE:
        base_addresses["api"] = settings.STRIPE_API_BASE.rstrip("/")
    return stripe.StripeClient(settings.STRIPE_API_KEY, base_addresses=base_addresses, max_network_retries=2)
