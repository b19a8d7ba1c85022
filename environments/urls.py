from django.urls import path

from . import api

urlpatterns = [
    path("environments", api.EnvironmentListCreateApi.as_view(), name="environment-list"),
    path("environments/<str:environment_id>", api.EnvironmentDeleteApi.as_view(), name="environment-detail"),
    path("environments/<str:environment_id>/upload", api.EnvironmentUploadApi.as_view(), name="environment-upload"),
    path("environments/<str:environment_id>/files", api.EnvironmentFilesApi.as_view(), name="environment-files"),
    path(
        "environments/<str:environment_id>/files/<str:file_id>",
        api.EnvironmentFileDeleteApi.as_view(),
        name="environment-file",
    ),
    path("profiles", api.ProfileListCreateApi.as_view(), name="profile-list"),
    path("profiles/<str:environment_id>", api.ProfileDeleteApi.as_view(), name="profile-detail"),
    path("profiles/<str:environment_id>/upload", api.ProfileUploadApi.as_view(), name="profile-upload"),
    path("profiles/<str:environment_id>/download", api.ProfileDownloadApi.as_view(), name="profile-download"),
    path("profiles/<str:environment_id>/archive", api.ProfileArchiveApi.as_view(), name="profile-archive"),
    path("files/upload", api.FileUploadApi.as_view(), name="file-upload"),
    path("files/<str:file_id>", api.FileDetailApi.as_view(), name="file-detail"),
    path("files/<str:file_id>/download", api.FileDownloadApi.as_view(), name="file-download"),
    path("policies", api.PolicyListCreateApi.as_view(), name="policy-list"),
    path("policies/<str:policy_id>", api.PolicyDetailApi.as_view(), name="policy-detail"),
    path("sessions/<str:session_id>/policy-audit", api.SessionPolicyAuditApi.as_view(), name="session-policy-audit"),
    path("cron-jobs", api.TriggerListCreateApi.as_view(), name="trigger-list"),
    path("cron-jobs/<str:trigger_id>", api.TriggerDetailApi.as_view(), name="trigger-detail"),
    path("cron-jobs/<str:trigger_id>/pause", api.TriggerPauseApi.as_view(), name="trigger-pause"),
    path("cron-jobs/<str:trigger_id>/resume", api.TriggerResumeApi.as_view(), name="trigger-resume"),
    path("cron-jobs/<str:trigger_id>/trigger", api.TriggerRunNowApi.as_view(), name="trigger-run-now"),
    path("cron-jobs/<str:trigger_id>/runs", api.TriggerRunsApi.as_view(), name="trigger-runs"),
    path("cron-jobs/<str:trigger_id>/runs/<str:run_id>", api.TriggerRunDetailApi.as_view(), name="trigger-run"),
    path("webhooks/secret", api.WebhookSecretApi.as_view(), name="webhook-secret"),
    path("webhooks/secret/rotate", api.WebhookSecretRotateApi.as_view(), name="webhook-secret-rotate"),
    path("task/<str:session_id>/<str:task_id>/webhooks", api.TaskWebhooksApi.as_view(), name="task-webhooks"),
]
