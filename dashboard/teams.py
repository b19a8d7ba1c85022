"""The current team of a dashboard request: kept in the Django session, checked on every request."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.shortcuts import redirect

from accounts.models import Membership, Team, User

SESSION_KEY = "dashboard_team_id"


@dataclass(frozen=True)
class Context:
    """Who is acting, in which team, with which role."""

    user: User
    team: Team
    membership: Membership

    @property
    def role(self) -> str:
        return self.membership.role

    @property
    def is_manager(self) -> bool:
        """Owners and admins: invite, change roles, remove members, top up, revoke any key."""
        return self.membership.is_manager

    @property
    def is_owner(self) -> bool:
        return self.membership.is_owner


def current_membership(request: HttpRequest) -> Membership | None:
    """The membership of the team chosen in the session, else the user's oldest; None if none."""
    if not request.user.is_authenticated:
        return None
    memberships = Membership.objects.filter(user=request.user, team__is_active=True).select_related("team")
    chosen = request.session.get(SESSION_KEY)
    membership = memberships.filter(team_id=chosen).first() if chosen else None
    if membership is None:
        membership = memberships.order_by("-team__is_personal", "id").first()
        if membership is not None:
            request.session[SESSION_KEY] = membership.team_id
    return membership


def set_current_team(request: HttpRequest, team: Team) -> None:
    request.session[SESSION_KEY] = team.pk


View = Callable[..., HttpResponseBase]


def team_view(view: Callable[..., HttpResponseBase]) -> View:
    """Log-in required; the view receives `ctx` (a Context) after the request."""

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        membership = current_membership(request)
        if membership is None:
            return redirect("dashboard:team-create")
        ctx = Context(user=request.user, team=membership.team, membership=membership)  # type: ignore[arg-type]
        request.dashboard = ctx  # type: ignore[attr-defined]
        return view(request, ctx, *args, **kwargs)

    return wrapper
