"""Membership writes: invitations, role changes, removal, leaving a team.

Each checks the acting user's role itself, so a view cannot forget it (rules: README.md).
An invitation link is single use, and the end of a membership withdraws the open invitations of
that address to the team, so a removed member cannot rejoin with an old link.
"""

from __future__ import annotations

from typing import Any

from django.core import signing
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from enigma_site.errors import ApiError, InvalidParameter

from .models import Invitation, Membership, Team, User
from .services import PermissionDenied

INVITE_SALT = "enigma.invite"
INVITE_MAX_AGE_S = 7 * 24 * 3600


class InviteInvalid(ApiError):
    code = "INVITE_INVALID"
    default_message = "This invitation link is invalid or has expired. Ask for a new one."


INVITE_CLOSED = "This invitation link has already been used or was withdrawn. Ask for a new one."


def _role_of(*, team: Team, user: User) -> str | None:
    return Membership.objects.filter(team=team, user=user).values_list("role", flat=True).first()


def is_team_manager(*, team: Team | int, user: User) -> bool:
    """Whether `user` is an owner or admin of the team (Membership.MANAGER_ROLES)."""
    team_id = team if isinstance(team, int) else team.pk
    return Membership.objects.filter(team_id=team_id, user=user, role__in=Membership.MANAGER_ROLES).exists()


def _require_manager(*, team: Team, user: User) -> str:
    role = _role_of(team=team, user=user)
    if role not in Membership.MANAGER_ROLES:
        raise PermissionDenied("Only owners and admins of the team can manage members")
    return role


def _check_assignable(*, acting_role: str, role: str) -> None:
    if role not in Membership.Role.values:
        raise InvalidParameter("role", f"Unknown role '{role}'")
    if role == Membership.Role.OWNER and acting_role != Membership.Role.OWNER:
        raise PermissionDenied("Only owners can make someone an owner")


def _invitations_close(*, team: Team | int, email: str) -> None:
    """Withdraw the open invitations of `email` to the team."""
    team_id = team if isinstance(team, int) else team.pk
    Invitation.objects.filter(
        team_id=team_id, email=email.lower(), accepted_at__isnull=True, revoked_at__isnull=True
    ).update(revoked_at=timezone.now())


def invite_create(*, team: Team, user: User, email: str, role: str, accept_url: Any) -> str:
    """Invite `email` to `team` as `role` (replacing an open invitation of that address), email
    the signed link of the invitation and return it.

    `accept_url` turns the signed token into an absolute URL.
    """
    acting_role = _require_manager(team=team, user=user)
    _check_assignable(acting_role=acting_role, role=role)
    email = email.strip().lower()
    if Membership.objects.filter(team=team, user__email=email).exists():
        raise InvalidParameter("email", f"{email} is already a member of {team.name}")
    with transaction.atomic():
        _invitations_close(team=team, email=email)
        invitation = Invitation.objects.create(team=team, email=email, role=role, invited_by=user)
    token = signing.dumps({"i": invitation.pk}, salt=INVITE_SALT)
    link = str(accept_url(token))
    send_mail(
        subject=f"{user.email} invited you to {team.name} on Enigma",
        message=(
            f"{user.email} invited you to join the team {team.name} on Enigma as {role}.\n\n"
            f"Accept the invitation: {link}\n\nThe link works once and expires in 7 days."
        ),
        from_email=None,
        recipient_list=[email],
        fail_silently=True,
    )
    return link


def invite_read(token: str) -> Invitation:
    """Return the open invitation a token names, or raise InviteInvalid."""
    try:
        data = signing.loads(token, salt=INVITE_SALT, max_age=INVITE_MAX_AGE_S)
        invitation = Invitation.objects.select_related("team").get(pk=int(data["i"]), team__is_active=True)
    except (signing.BadSignature, KeyError, TypeError, ValueError, Invitation.DoesNotExist):
        raise InviteInvalid() from None
    if not invitation.is_open:
        raise InviteInvalid(INVITE_CLOSED)
    return invitation


@transaction.atomic
def invite_accept(*, token: str, user: User) -> Membership:
    """Join the team of an open invitation addressed to the user's email; the invitation is
    used up (a conditional update, so two clicks at once join once)."""
    invitation = invite_read(token)
    if invitation.email != user.email.lower():
        raise InviteInvalid(f"This invitation is for {invitation.email}. Log in with that address to accept it.")
    if (
        Invitation.objects.filter(pk=invitation.pk, accepted_at__isnull=True, revoked_at__isnull=True).update(
            accepted_at=timezone.now(), accepted_by=user
        )
        != 1
    ):
        raise InviteInvalid(INVITE_CLOSED)
    membership, _ = Membership.objects.get_or_create(
        team=invitation.team, user=user, defaults={"role": invitation.role}
    )
    return membership


def _owners(team: Team) -> int:
    return Membership.objects.filter(team=team, role=Membership.Role.OWNER).count()


@transaction.atomic
def membership_role_change(*, membership: Membership, user: User, role: str) -> Membership:
    """Change a member's role. Admins manage members and admins; only owners touch owners.
    A team always keeps at least one owner."""
    acting_role = _require_manager(team=membership.team, user=user)
    _check_assignable(acting_role=acting_role, role=role)
    if membership.is_owner and acting_role != Membership.Role.OWNER:
        raise PermissionDenied("Only owners can change an owner's role")
    if membership.is_owner and role != Membership.Role.OWNER and _owners(membership.team) == 1:
        raise InvalidParameter("role", "A team needs at least one owner: make someone else owner first")
    membership.role = role
    membership.save(update_fields=["role"])
    return membership


@transaction.atomic
def membership_remove(*, membership: Membership, user: User) -> None:
    """Remove someone else from the team (use team_leave for yourself)."""
    acting_role = _require_manager(team=membership.team, user=user)
    if membership.user_id == user.pk:
        raise InvalidParameter("member", "Use “Leave team” to remove yourself")
    if membership.is_owner and acting_role != Membership.Role.OWNER:
        raise PermissionDenied("Only owners can remove an owner")
    _invitations_close(team=membership.team_id, email=membership.user.email)
    membership.delete()


@transaction.atomic
def team_leave(*, team: Team, user: User) -> None:
    """Leave a team; the last owner cannot leave (the team would have no one to pay for it)."""
    membership = Membership.objects.select_for_update().filter(team=team, user=user).first()
    if membership is None:
        raise PermissionDenied("You are not a member of this team")
    if membership.is_owner and _owners(team) == 1:
        raise InvalidParameter("team", "You are the only owner: make someone else owner before leaving")
    _invitations_close(team=team, email=user.email)
    membership.delete()
