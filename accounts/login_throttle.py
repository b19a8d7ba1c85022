"""Login throttling for every password login (dashboard and Django admin alike).

`ThrottledModelBackend` is Django's ModelBackend that first refuses (PermissionDenied stops the
backend chain) while an email address or a client address has too many recent failures. Failures
are counted from Django's `user_login_failed` signal, in fixed windows in Redis, so every web
process shares the count; a successful login clears the address's count.
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.core.exceptions import PermissionDenied
from django.dispatch import receiver
from django.http import HttpRequest

from enigma_site.redis import get_redis


def _keys(request: HttpRequest | None, email: str) -> list[tuple[str, int]]:
    keys = []
    if email:
        digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]
        keys.append((f"enigma:login-fail:email:{digest}", settings.ENIGMA_LOGIN_MAX_FAILURES))
    address = request.META.get("REMOTE_ADDR", "") if request is not None else ""
    if address:
        keys.append((f"enigma:login-fail:ip:{address}", settings.ENIGMA_LOGIN_MAX_FAILURES_PER_IP))
    return keys


def login_blocked(request: HttpRequest | None, email: str) -> bool:
    keys = _keys(request, email)
    if not keys:
        return False
    counts = get_redis().mget([key for key, _ in keys])
    return any(int(count or 0) >= limit for count, (_, limit) in zip(counts, keys, strict=True))


class ThrottledModelBackend(ModelBackend):
    """ModelBackend that refuses a login attempt while its email or client address is throttled."""

    def authenticate(
        self, request: HttpRequest | None, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> Any:
        email = username or kwargs.get("email") or ""
        if login_blocked(request, email):
            raise PermissionDenied("too many failed log-in attempts")
        return super().authenticate(request, username=username, password=password, **kwargs)


@receiver(user_login_failed)
def _count_failure(sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any) -> None:
    email = credentials.get("username") or credentials.get("email") or ""
    window = int(settings.ENIGMA_LOGIN_WINDOW_S)
    pipe = get_redis().pipeline()
    for key, _ in _keys(request, email):
        pipe.incr(key)
        pipe.expire(key, window, nx=True)
    pipe.execute()


@receiver(user_logged_in)
def _clear_failures(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    keys = _keys(None, getattr(user, "email", ""))
    if keys:
        get_redis().delete(*[key for key, _ in keys])
