from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("whep/<str:token>", views.whep_endpoint, name="whep"),
    path("whep/<str:token>/<str:resource>", views.whep_resource, name="whep-resource"),
]
