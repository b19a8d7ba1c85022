from django.urls import path

from . import api

urlpatterns = [
    path("cron-jobs", api.TriggerListCreateApi.as_view(), name="trigger-list"),
    path("cron-jobs/<str:trigger_id>", api.TriggerDetailApi.as_view(), name="trigger-detail"),
    path("cron-jobs/<str:trigger_id>/pause", api.TriggerPauseApi.as_view(), name="trigger-pause"),
    path("cron-jobs/<str:trigger_id>/resume", api.TriggerResumeApi.as_view(), name="trigger-resume"),
    path("cron-jobs/<str:trigger_id>/trigger", api.TriggerRunNowApi.as_view(), name="trigger-run-now"),
    path("cron-jobs/<str:trigger_id>/runs", api.TriggerRunsApi.as_view(), name="trigger-runs"),
    path("cron-jobs/<str:trigger_id>/runs/<str:run_id>", api.TriggerRunDetailApi.as_view(), name="trigger-run"),
]
