"""Users log in by email; a team owns the balance, API keys and sessions."""

from __future__ import annotations

from typing import Any, ClassVar

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.contrib.auth.models import UserManager as DjangoUserManager
from django.db import models


class UserManager(DjangoUserManager["User"]):
    def _create_user(self, username: Any, email: Any, password: Any, **extra: Any) -> User:
        email = self.normalize_email(email or username).lower()
        user = self.model(email=email, username=email, **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra: Any) -> User:  # type: ignore[override]
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create_user(email, email, password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra: Any) -> User:  # type: ignore[override]
        extra.update(is_staff=True, is_superuser=True)
        return self._create_user(email, email, password, **extra)


class User(AbstractUser):
    email = models.EmailField(unique=True)

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []
    objects = UserManager()  # type: ignore[misc]

    def __str__(self) -> str:
        return self.email


class Team(models.Model):
    name = models.CharField(max_length=100)
    is_active = models.BooleanField(default=True)
    is_personal = models.BooleanField(default=False)
    # Cached sum of the team's ledger entries; moved only by billing.services under a row lock.
    balance_micros = models.BigIntegerField(default=0)
    session_limit = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Live sessions the team may have at once; empty: "
        "ENIGMA_TEAM_SESSION_LIMIT (default 5); 0 stops new sessions.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, through="Membership", related_name="teams")

    def __str__(self) -> str:
        return self.name

    @property
    def live_session_limit(self) -> int:
        """The team's own limit of live sessions, else the installation's default."""
        return settings.ENIGMA_TEAM_SESSION_LIMIT if self.session_limit is None else self.session_limit


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner"
        ADMIN = "admin"
        MEMBER = "member"

    # Owners and admins manage the team: invite, change roles, remove members, top up, revoke
    # any key (members revoke the keys they created). Only owners make or unmake owners.
    MANAGER_ROLES = (Role.OWNER, Role.ADMIN)

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "user"], name="unique_membership")]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} ({self.role})"

    @property
    def is_manager(self) -> bool:
        return self.role in self.MANAGER_ROLES

    @property
    def is_owner(self) -> bool:
        return self.role == self.Role.OWNER


class Invitation(models.Model):
    """An invitation of an email address to a team: its link works once, while it is open.

    Accepting it, a newer invitation to the same address, or the end of that address's
    membership of the team closes it (accounts/memberships.py).
    """

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=10, choices=Membership.Role.choices)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["team", "email"])]

    def __str__(self) -> str:
        return f"invitation of {self.email} to {self.team} ({self.role})"

    @property
    def is_open(self) -> bool:
        return self.accepted_at is None and self.revoked_at is None


class ApiKey(models.Model):
    """An API key: `enig_<prefix><secret>`; we keep the prefix for lookup and an HMAC of the key."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="api_keys")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="api_keys"
    )
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=16, unique=True)
    digest = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @property
    def display(self) -> str:
        return f"enig_{self.prefix}…"

    def __str__(self) -> str:
        return f"{self.name or 'key'} ({self.display})"
