from django.urls import path

from . import api

urlpatterns = [
    path("webhooks/secret", api.WebhookSecretApi.as_view(), name="webhook-secret"),
    path("webhooks/secret/rotate", api.WebhookSecretRotateApi.as_view(), name="webhook-secret-rotate"),
    path("task/<str:session_id>/<str:task_id>/webhooks", api.TaskWebhooksApi.as_view(), name="task-webhooks"),
]
