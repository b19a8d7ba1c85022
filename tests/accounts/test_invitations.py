"""Invitation links through the dashboard over HTTP: single use, dead once the member is removed."""

from __future__ import annotations

import re
from typing import Any

import requests

from tests.dashboard.conftest import PASSWORD, csrf_of, login_client, unique_email


def _user(prefix: str) -> Any:
    from accounts.services import personal_team, user_create

    user = user_create(email=unique_email(prefix), password=PASSWORD)
    return user, personal_team(user)


def _invite(client: requests.Session, server: str, email: str, role: str) -> str:
    token = csrf_of(client, server, "/app/team/")
    response = client.post(
        f"{server}/app/team/invite/",
        timeout=10,
        data={"email": email, "role": role, "csrfmiddlewaretoken": token},
        headers={"Accept": "application/json"},
    )
    assert response.status_code == 200, response.text
    return str(response.json()["link"])


def _accept(client: requests.Session, link: str) -> requests.Response:
    """Open the link and press "Accept and join", as the invitee does."""
    page = client.get(link, timeout=10)
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    # A dead link shows no form: post with the CSRF cookie, as a replayed request would.
    token = match.group(1) if match else client.cookies["csrftoken"]
    return client.post(link, data={"csrfmiddlewaretoken": token}, timeout=10)


def _remove(client: requests.Session, server: str, membership_id: int) -> None:
    token = csrf_of(client, server, "/app/team/")
    response = client.post(
        f"{server}/app/team/members/{membership_id}/remove/",
        timeout=10,
        data={"csrfmiddlewaretoken": token},
        headers={"Accept": "application/json"},
    )
    assert response.status_code == 200, response.text


def test_removed_member_cannot_rejoin_with_the_same_link(server: str, transactional_db: Any) -> None:
    from accounts.models import Membership

    owner, team = _user("owner")
    invitee, _ = _user("invitee")
    owner_client = login_client(server, owner.email)
    link = _invite(owner_client, server, invitee.email, "admin")
    invitee_client = login_client(server, invitee.email)
    assert _accept(invitee_client, link).status_code == 200
    membership = Membership.objects.get(team=team, user=invitee)
    assert membership.role == "admin"

    # Single use: the link does nothing more, even for the member who used it.
    again = _accept(invitee_client, link)
    assert again.status_code == 400 and "already been used" in again.text

    _remove(owner_client, server, membership.pk)
    assert not Membership.objects.filter(team=team, user=invitee).exists()
    assert invitee_client.get(link, timeout=10).status_code == 400
    rejoin = _accept(invitee_client, link)
    assert rejoin.status_code == 400
    assert not Membership.objects.filter(team=team, user=invitee).exists()

    # A new invitation is needed to come back.
    fresh = _invite(owner_client, server, invitee.email, "member")
    assert _accept(invitee_client, fresh).status_code == 200
    assert Membership.objects.get(team=team, user=invitee).role == "member"


def test_open_invitation_dies_when_its_member_is_removed(server: str, transactional_db: Any) -> None:
    """An operator added the person before they used their link; removing them kills the link."""
    from accounts.models import Membership

    owner, team = _user("owner")
    invitee, _ = _user("invitee")
    owner_client = login_client(server, owner.email)
    link = _invite(owner_client, server, invitee.email, "admin")
    membership = Membership.objects.create(team=team, user=invitee, role=Membership.Role.MEMBER)
    _remove(owner_client, server, membership.pk)

    invitee_client = login_client(server, invitee.email)
    assert _accept(invitee_client, link).status_code == 400
    assert not Membership.objects.filter(team=team, user=invitee).exists()


def test_a_new_invitation_replaces_the_open_one(server: str, transactional_db: Any) -> None:
    from accounts.models import Membership

    owner, team = _user("owner")
    invitee, _ = _user("invitee")
    owner_client = login_client(server, owner.email)
    first = _invite(owner_client, server, invitee.email, "admin")
    second = _invite(owner_client, server, invitee.email, "member")
    invitee_client = login_client(server, invitee.email)
    assert _accept(invitee_client, first).status_code == 400
    assert _accept(invitee_client, second).status_code == 200
    assert Membership.objects.get(team=team, user=invitee).role == "member"
