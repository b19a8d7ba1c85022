from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("view/<str:token>", views.viewer_page, name="viewer"),
    path("sessions/<str:session_id>/viewer-links", views.viewer_link, name="viewer-link"),
]
