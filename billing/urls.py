from __future__ import annotations

from django.urls import URLPattern, path

from . import api

urlpatterns: list[URLPattern] = [
    path("account", api.account, name="account"),
    path("account/usage", api.account_usage, name="account-usage"),
    path("billing/stripe/webhook", api.stripe_webhook, name="stripe-webhook"),
]
