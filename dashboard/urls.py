from __future__ import annotations

from django.contrib.auth import views as auth
from django.urls import URLPattern, path, reverse_lazy

from . import views

app_name = "dashboard"

_reset = {
    "success_url": reverse_lazy("dashboard:password-reset-done"),
    "template_name": "dashboard/auth/password_reset.html",
    "email_template_name": "dashboard/auth/password_reset_email.txt",
    "subject_template_name": "dashboard/auth/password_reset_subject.txt",
}

urlpatterns: list[URLPattern] = [
    path("", views.home, name="home"),
    path("signup/", views.signup, name="signup"),
    path(
        "login/",
        auth.LoginView.as_view(template_name="dashboard/auth/login.html", redirect_authenticated_user=True),
        name="login",
    ),
    path("logout/", auth.LogoutView.as_view(next_page="dashboard:login"), name="logout"),
    path("password-reset/", auth.PasswordResetView.as_view(**_reset), name="password-reset"),
    path(
        "password-reset/sent/",
        auth.PasswordResetDoneView.as_view(template_name="dashboard/auth/password_reset_done.html"),
        name="password-reset-done",
    ),
    path(
        "password-reset/<uidb64>/<token>/",
        auth.PasswordResetConfirmView.as_view(
            template_name="dashboard/auth/password_reset_confirm.html",
            success_url=reverse_lazy("dashboard:password-reset-complete"),
        ),
        name="password-reset-confirm",
    ),
    path(
        "password-reset/done/",
        auth.PasswordResetCompleteView.as_view(template_name="dashboard/auth/password_reset_complete.html"),
        name="password-reset-complete",
    ),
    path("invite/<str:token>/", views.invite, name="invite"),
    path("app/", views.overview, name="overview"),
    path("app/teams/switch/", views.team_switch, name="team-switch"),
    path("app/teams/new/", views.team_new, name="team-create"),
    path("app/team/", views.members, name="members"),
    path("app/team/invite/", views.member_invite, name="member-invite"),
    path("app/team/members/<int:membership_id>/role/", views.member_role, name="member-role"),
    path("app/team/members/<int:membership_id>/remove/", views.member_remove, name="member-remove"),
    path("app/team/leave/", views.team_leave, name="team-leave"),
    path("app/keys/", views.keys, name="keys"),
    path("app/keys/<int:key_id>/revoke/", views.key_revoke, name="key-revoke"),
    path("app/sessions/", views.sessions, name="sessions"),
    path("app/sessions/rows/", views.session_rows, name="session-rows"),
    path("app/sessions/<str:session_id>/", views.session_page, name="session"),
    path("app/sessions/<str:session_id>/poll/", views.session_poll, name="session-poll"),
    path("app/sessions/<str:session_id>/control/", views.session_control, name="session-control"),
    path("app/sessions/<str:session_id>/task/", views.session_task, name="session-task"),
    path("app/sessions/<str:session_id>/guardrail/", views.session_guardrail, name="session-guardrail"),
    path("app/playground/", views.playground, name="playground"),
    path("app/billing/", views.billing_page, name="billing"),
    path("app/billing/topup/", views.billing_topup, name="billing-topup"),
    path("app/billing/balance/", views.billing_balance, name="billing-balance"),
    path("app/billing/ledger.csv", views.billing_csv, name="billing-csv"),
]
