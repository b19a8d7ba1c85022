from django.urls import path

from . import api

urlpatterns = [
    path("policies", api.PolicyListCreateApi.as_view(), name="policy-list"),
    path("policies/<str:policy_id>", api.PolicyDetailApi.as_view(), name="policy-detail"),
]
