from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("view/<str:token>", views.viewer_page, name="viewer"),
]
