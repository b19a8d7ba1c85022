"""Writes for users, teams, memberships and API keys."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from enigma_site.errors import ApiError

from .models import ApiKey, Membership, Team, User

KEY_PREFIX = "enig_"
_ALPHABET = string.ascii_letters + string.digits
_LOOKUP_LEN = 12
_SECRET_LEN = 32


class PermissionDenied(ApiError):
    status_code = 403
    code = "FORBIDDEN"
    default_message = "You do not have permission to do this"


def key_digest(raw_key: str) -> str:
    return hmac.new(settings.ENIGMA_KEY_HMAC_SECRET.encode(), raw_key.encode(), hashlib.sha256).hexdigest()


def split_key(raw_key: str) -> str | None:
    """Return the lookup prefix of a well-formed key, or None."""
    if not raw_key.startswith(KEY_PREFIX):
        return None
    body = raw_key[len(KEY_PREFIX) :]
    if len(body) != _LOOKUP_LEN + _SECRET_LEN or not body.isalnum():
        return None
    return body[:_LOOKUP_LEN]


@transaction.atomic
def user_create(*, email: str, password: str | None = None) -> User:
    """Create a user with a personal team they own."""
    user = User.objects.create_user(email=email, password=password)
    team = Team.objects.create(name=f"{user.email}'s team", is_personal=True)
    Membership.objects.create(team=team, user=user, role=Membership.Role.OWNER)
    return user


def user_get_or_create(*, email: str) -> tuple[User, bool]:
    email = email.strip().lower()
    existing = User.objects.filter(email=email).first()
    if existing:
        return existing, False
    return user_create(email=email), True


def team_create(*, owner: User, name: str) -> Team:
    with transaction.atomic():
        team = Team.objects.create(name=name)
        Membership.objects.create(team=team, user=owner, role=Membership.Role.OWNER)
    return team


def personal_team(user: User) -> Team:
    membership = (
        Membership.objects.filter(user=user, role=Membership.Role.OWNER)
        .select_related("team")
        .order_by("-team__is_personal", "id")
        .first()
    )
    if membership is None:
        raise PermissionDenied("User has no team")
    return membership.team


@dataclass(frozen=True)
class CreatedKey:
    api_key: ApiKey
    raw: str  # shown once, never stored


def api_key_create(*, team: Team, user: User | None, name: str = "") -> CreatedKey:
    """Create a key for a team the user belongs to; the raw key is returned only here."""
    if user is not None and not Membership.objects.filter(team=team, user=user).exists():
        raise PermissionDenied("Not a member of this team")
    lookup = "".join(secrets.choice(_ALPHABET) for _ in range(_LOOKUP_LEN))
    secret = "".join(secrets.choice(_ALPHABET) for _ in range(_SECRET_LEN))
    raw = f"{KEY_PREFIX}{lookup}{secret}"
    key = ApiKey.objects.create(team=team, created_by=user, name=name[:100], prefix=lookup, digest=key_digest(raw))
    return CreatedKey(api_key=key, raw=raw)


def can_revoke(*, user: User, api_key: ApiKey) -> bool:
    """Owners and admins revoke any key of their team; members revoke only keys they created."""
    membership = Membership.objects.filter(team_id=api_key.team_id, user=user).first()
    if membership is None:
        return False
    return membership.is_manager or api_key.created_by_id == user.pk


def api_key_revoke(*, api_key: ApiKey, user: User | None) -> ApiKey:
    """Revoke a key (idempotent). `user` None means an operator (admin action)."""
    if user is not None and not can_revoke(user=user, api_key=api_key):
        raise PermissionDenied("Only owners, admins or the key's creator can revoke this key")
    ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    api_key.refresh_from_db()
    return api_key


def api_key_verify(raw_key: str) -> ApiKey | None:
    """Return the active key matching `raw_key`, or None. Constant-time on the secret part."""
    lookup = split_key(raw_key)
    if lookup is None:
        return None
    try:  # the prefix is unique: get(), which needs no ORDER BY, not first() (every request runs this)
        key = ApiKey.objects.select_related("team").get(prefix=lookup)
    except ApiKey.DoesNotExist:
        return None
    if not hmac.compare_digest(key.digest, key_digest(raw_key)):
        return None
    if key.revoked_at is not None:
        return None
    return key


def api_key_touch(api_key: ApiKey) -> None:
    """Record use, at most once a minute per key to spare the database."""
    now = timezone.now()
    if api_key.last_used_at and (now - api_key.last_used_at).total_seconds() < 60:
        return
    ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
    api_key.last_used_at = now
