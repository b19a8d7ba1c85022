"""Tenancy, roles and CSRF of the dashboard, over plain HTTP against the live server."""

from __future__ import annotations

import html
import re
from typing import Any

from tests.dashboard.conftest import PASSWORD, csrf_of, login_client, unique_email


def _user(prefix: str) -> Any:
    from accounts.services import personal_team, user_create

    user = user_create(email=unique_email(prefix), password=PASSWORD)
    return user, personal_team(user)


def test_member_of_team_a_cannot_open_team_b_session(server: str, transactional_db: Any) -> None:
    from sessions_app.models import BrowserSession

    user_a, _ = _user("a")
    _, team_b = _user("b")
    foreign = BrowserSession.objects.create(team=team_b, state=BrowserSession.State.COMPLETED)
    client = login_client(server, user_a.email)
    for path in ("/", "/poll/"):
        assert client.get(f"{server}/app/sessions/{foreign.pk}{path}", timeout=10).status_code == 404
    token = csrf_of(client, server, "/app/sessions/")
    response = client.post(
        f"{server}/app/sessions/{foreign.pk}/control/",
        timeout=10,
        data={"action": "terminate", "csrfmiddlewaretoken": token},
    )
    assert response.status_code == 404
    assert foreign.pk not in client.get(f"{server}/app/sessions/", timeout=10).text


def test_post_without_csrf_token_is_rejected(server: str, transactional_db: Any) -> None:
    from accounts.models import ApiKey

    user, team = _user("csrf")
    client = login_client(server, user.email)
    response = client.post(f"{server}/app/keys/", data={"name": "sneaky"}, timeout=10, allow_redirects=False)
    assert response.status_code == 403
    assert not ApiKey.objects.filter(team=team).exists()
    token = csrf_of(client, server, "/app/keys/")
    response = client.post(
        f"{server}/app/keys/", data={"name": "ok", "csrfmiddlewaretoken": token}, timeout=10, allow_redirects=False
    )
    assert response.status_code == 302 and ApiKey.objects.filter(team=team, name="ok").exists()


def test_member_cannot_invite_or_top_up_but_admin_can_invite(server: str, transactional_db: Any) -> None:
    from accounts.models import Membership

    owner, team = _user("owner")
    member, _ = _user("member")
    Membership.objects.create(team=team, user=member, role=Membership.Role.MEMBER)
    client = login_client(server, member.email)
    token = csrf_of(client, server, "/app/keys/")
    client.post(f"{server}/app/teams/switch/", data={"team": team.pk, "csrfmiddlewaretoken": token}, timeout=10)
    assert html.escape(team.name) in client.get(f"{server}/app/", timeout=10).text
    headers = {"Accept": "application/json", "X-CSRFToken": token}
    invite = client.post(
        f"{server}/app/team/invite/", data={"email": "x@example.com", "role": "member"}, headers=headers, timeout=10
    )
    assert invite.status_code == 403
    topup = client.post(f"{server}/app/billing/topup/", data={"amount": "25"}, headers=headers, timeout=10)
    assert topup.status_code == 403 and "owners and admins" in topup.json()["error"]

    Membership.objects.filter(team=team, user=member).update(role=Membership.Role.ADMIN)
    invite = client.post(
        f"{server}/app/team/invite/", data={"email": "new@example.com", "role": "member"}, headers=headers, timeout=10
    )
    assert invite.status_code == 200 and "/invite/" in invite.json()["link"]
    owner_up = client.post(
        f"{server}/app/team/invite/", data={"email": "boss@example.com", "role": "owner"}, headers=headers, timeout=10
    )
    assert owner_up.status_code == 403


def test_invited_user_joins_through_the_signed_link(server: str, transactional_db: Any) -> None:
    from accounts.models import Membership

    owner, team = _user("inviter")
    invitee, _ = _user("invitee")
    client = login_client(server, owner.email)
    token = csrf_of(client, server, "/app/team/")
    link = client.post(
        f"{server}/app/team/invite/",
        timeout=10,
        data={"email": invitee.email, "role": "admin", "csrfmiddlewaretoken": token},
        headers={"Accept": "application/json"},
    ).json()["link"]
    other = login_client(server, invitee.email)
    page = other.get(link, timeout=10)
    assert f"Join {html.escape(team.name)}" in page.text
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    assert other.post(link, data={"csrfmiddlewaretoken": csrf}, timeout=10).status_code == 200
    assert Membership.objects.get(team=team, user=invitee).role == "admin"
    tampered = link.replace("/invite/", "/invite/x")
    assert other.get(tampered, timeout=10).status_code == 400


def test_switching_to_a_team_that_is_not_a_number_is_not_found(server: str, transactional_db: Any) -> None:
    user, _ = _user("switch")
    client = login_client(server, user.email)
    token = csrf_of(client, server, "/app/keys/")
    for team in ("abc", ""):
        response = client.post(
            f"{server}/app/teams/switch/",
            data={"team": team, "csrfmiddlewaretoken": token},
            timeout=10,
            allow_redirects=False,
        )
        assert response.status_code == 404


def test_the_overview_and_session_list_show_a_session_whose_config_names_no_starting_url(
    server: str, transactional_db: Any
) -> None:
    """A session row without `startingUrl` in its config (one made in the admin, or before the
    field existed) is listed with a dash; the overview answered 500 (a missing filter argument
    raises in Django templates)."""
    from sessions_app.models import BrowserSession

    user, team = _user("noconfig")
    session = BrowserSession.objects.create(team=team, state=BrowserSession.State.COMPLETED, config={})
    client = login_client(server, user.email)
    for path in ("/app/", "/app/sessions/", f"/app/sessions/{session.pk}/"):
        response = client.get(f"{server}{path}", timeout=10)
        assert response.status_code == 200, (path, response.status_code)
    assert "—" in client.get(f"{server}/app/", timeout=10).text
