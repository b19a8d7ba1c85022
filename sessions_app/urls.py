from django.urls import path

from . import api, cdp_api, metrics, policy_audit_api

urlpatterns = [
    path("start/start-session", api.start_session, name="start-session"),
    path("start/run-task", api.run_task, name="run-task"),
    path("start/send-message", api.send_message, name="send-message"),
    path("start/health", api.health, name="health"),
    path("start/active-sockets", api.active_sockets, name="active-sockets"),
    path("task/<str:session_id>/<str:task_id>", api.task_poll, name="task-poll"),
    path("metrics", metrics.metrics, name="metrics"),
    path("sessions", api.session_list, name="session-list"),
    path("sessions/<str:session_id>", api.session_detail, name="session-detail"),
    path("sessions/<str:session_id>/events", api.session_events, name="session-events"),
    path("sessions/<str:session_id>/cdp-tokens", cdp_api.cdp_tokens, name="session-cdp-tokens"),
    path("sessions/<str:session_id>/files", cdp_api.session_files, name="session-files"),
    path(
        "sessions/<str:session_id>/policy-audit",
        policy_audit_api.SessionPolicyAuditApi.as_view(),
        name="session-policy-audit",
    ),
]
