from django.contrib import admin
from django.urls import include, path

from .openapi import openapi_view

urlpatterns = [
    path("admin/", admin.site.urls),
    path("openapi.json", openapi_view, name="openapi"),
    path("", include("sessions_app.urls")),
    path("", include("billing.urls")),
    path("", include("sessions_app.realtime.urls")),
    path("", include("integrations.urls")),
    path("", include("dashboard.urls")),
    path("", include("environments.urls")),
    path("", include("policies.urls")),
    path("", include("webhooks.urls")),
    path("", include("triggers.urls")),
    path("", include("video.urls")),
    path("", include("recordings.urls")),
]

handler404 = "enigma_site.errors.handler404"
handler500 = "enigma_site.errors.handler500"
