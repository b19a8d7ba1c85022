"""Dashboard hardening: a CSP on every page, Secure cookies and HSTS behind https, and login
throttling that holds for the dashboard and Django admin alike."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def user(db: Any) -> Any:
    from accounts.services import personal_team, user_create
    from enigma_site.redis import get_redis

    for key in get_redis().scan_iter("enigma:login-fail:*"):
        get_redis().delete(key)
    created = user_create(email="victim@example.com", password="correct-horse-battery")
    personal_team(created)
    return created


def test_pages_carry_a_content_security_policy(client: Client, db: Any) -> None:
    page = client.get("/login/")
    policy = page["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'self'" in policy
    assert "object-src 'none'" in policy
    assert page["X-Content-Type-Options"] == "nosniff"
    assert "Content-Security-Policy" not in client.get("/start/health")  # JSON, not a page


def test_login_is_throttled_per_email_after_repeated_failures(client: Client, user: Any) -> None:
    from django.conf import settings

    for _ in range(settings.ENIGMA_LOGIN_MAX_FAILURES):
        response = client.post("/login/", {"username": "victim@example.com", "password": "wrong"})
        assert response.status_code == 200 and "_auth_user_id" not in client.session
    # Now even the right password is refused, from another client address too, and in admin.
    other = Client(REMOTE_ADDR="10.9.9.9")
    response = other.post("/login/", {"username": "victim@example.com", "password": "correct-horse-battery"})
    assert "_auth_user_id" not in other.session
    response = other.post("/admin/login/", {"username": "victim@example.com", "password": "correct-horse-battery"})
    assert "_auth_user_id" not in other.session
    # Another account is not affected.
    from accounts.services import user_create

    user_create(email="bystander@example.com", password="another-good-password")
    response = other.post("/login/", {"username": "bystander@example.com", "password": "another-good-password"})
    assert response.status_code == 302 and "_auth_user_id" in other.session


def test_a_successful_login_clears_the_failure_count(client: Client, user: Any) -> None:
    from django.conf import settings

    for _ in range(settings.ENIGMA_LOGIN_MAX_FAILURES - 1):
        client.post("/login/", {"username": "victim@example.com", "password": "wrong"})
    assert (
        client.post("/login/", {"username": "victim@example.com", "password": "correct-horse-battery"}).status_code
        == 302
    )
    client.post("/logout/")
    for _ in range(settings.ENIGMA_LOGIN_MAX_FAILURES - 1):
        client.post("/login/", {"username": "victim@example.com", "password": "wrong"})
    assert (
        client.post("/login/", {"username": "victim@example.com", "password": "correct-horse-battery"}).status_code
        == 302
    )


def test_behind_https_cookies_are_secure_and_hsts_is_sent() -> None:
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_HSTS_SECONDS > 0, s.SECURE_SSL_REDIRECT)"
    )
    env_https = {"ENIGMA_PUBLIC_URL": "https://browsers.example.com", "DJANGO_SETTINGS_MODULE": "enigma_site.settings"}
    env_http = {"ENIGMA_PUBLIC_URL": "", "DJANGO_SETTINGS_MODULE": "enigma_site.settings"}
    import os

    def run(extra: dict[str, str]) -> str:
        env = {**os.environ, **extra}
        return subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
        ).stdout.strip()

    assert run(env_https) == "True True True True"
    assert run(env_http) == "False False False False"
