from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.test import override_settings
from rest_framework.test import APIClient

from accounts.models import ApiKey, Membership, User
from accounts.services import (
    PermissionDenied,
    api_key_create,
    api_key_revoke,
    api_key_verify,
    personal_team,
    user_create,
)
from enigma_site.redis import get_redis

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner() -> User:
    return user_create(email="owner@example.com", password="pw-123456789")


@pytest.fixture(autouse=True)
def _clean_rate_limits() -> None:
    for key in get_redis().scan_iter("enigma:rl:*"):
        get_redis().delete(key)


def test_new_user_gets_a_personal_team_they_own(owner: User) -> None:
    membership = Membership.objects.get(user=owner)
    assert membership.role == "owner"
    assert membership.team.is_personal


def test_key_is_prefixed_shown_once_and_stored_as_hmac(owner: User) -> None:
    created = api_key_create(team=personal_team(owner), user=owner, name="ci")
    assert created.raw.startswith("enig_")
    row = ApiKey.objects.get(pk=created.api_key.pk)
    assert created.raw not in (row.prefix, row.digest)
    assert created.raw[5:].startswith(row.prefix)
    assert api_key_verify(created.raw) == row
    assert api_key_verify(created.raw[:-1] + ("A" if created.raw[-1] != "A" else "B")) is None


def test_revoked_key_no_longer_verifies(owner: User) -> None:
    created = api_key_create(team=personal_team(owner), user=owner)
    api_key_revoke(api_key=created.api_key, user=owner)
    assert api_key_verify(created.raw) is None


def test_member_cannot_revoke_owner_key_but_admin_can(owner: User) -> None:
    team = personal_team(owner)
    member = user_create(email="member@example.com")
    admin = user_create(email="admin@example.com")
    Membership.objects.create(team=team, user=member, role="member")
    Membership.objects.create(team=team, user=admin, role="admin")
    created = api_key_create(team=team, user=owner)
    with pytest.raises(PermissionDenied):
        api_key_revoke(api_key=created.api_key, user=member)
    own = api_key_create(team=team, user=member)
    api_key_revoke(api_key=own.api_key, user=member)
    api_key_revoke(api_key=created.api_key, user=admin)
    assert not ApiKey.objects.get(pk=created.api_key.pk).is_active


def test_outsider_can_neither_create_nor_revoke_keys_of_another_team(owner: User) -> None:
    outsider = user_create(email="outsider@example.com")
    team = personal_team(owner)
    with pytest.raises(PermissionDenied):
        api_key_create(team=team, user=outsider)
    created = api_key_create(team=team, user=owner)
    with pytest.raises(PermissionDenied):
        api_key_revoke(api_key=created.api_key, user=outsider)


def test_missing_header_gets_contract_401() -> None:
    response = APIClient().get("/sessions")
    assert response.status_code == 401
    assert response.json() == {
        "success": False,
        "message": "API key required. Provide Authorization: Bearer <api_key>",
        "error": "API key required. Provide Authorization: Bearer <api_key>",
        "code": "UNAUTHORIZED",
        "details": {},
    }


def test_unknown_and_revoked_keys_get_invalid_api_key(owner: User) -> None:
    created = api_key_create(team=personal_team(owner), user=owner)
    client = APIClient()
    ok = client.get("/sessions", HTTP_AUTHORIZATION=f"Bearer {created.raw}")
    assert ok.status_code == 200
    assert ApiKey.objects.get(pk=created.api_key.pk).last_used_at is not None
    api_key_revoke(api_key=created.api_key, user=owner)
    for header in (f"Bearer {created.raw}", "Bearer enig_nope", "Basic abc"):
        response = client.get("/sessions", HTTP_AUTHORIZATION=header)
        assert response.status_code == 401
        body = response.json()
        assert body["message"] == "Invalid or revoked API key"
        assert body["code"] == "INVALID_API_KEY"


def test_deactivated_team_gets_403(owner: User) -> None:
    team = personal_team(owner)
    created = api_key_create(team=team, user=owner)
    team.is_active = False
    team.save()
    response = APIClient().get("/sessions", HTTP_AUTHORIZATION=f"Bearer {created.raw}")
    assert response.status_code == 403
    assert response.json()["message"] == "Account is deactivated"


def test_team_b_cannot_see_team_a_sessions(owner: User) -> None:
    from sessions_app.models import BrowserSession

    team_a = personal_team(owner)
    session = BrowserSession.objects.create(team=team_a)
    other = user_create(email="b@example.com")
    key_b = api_key_create(team=personal_team(other), user=other).raw
    client = APIClient(HTTP_AUTHORIZATION=f"Bearer {key_b}")
    assert client.get("/sessions").json()["sessions"] == []
    response = client.get(f"/sessions/{session.pk}")
    assert response.status_code == 404
    assert response.json()["code"] == "SESSION_NOT_FOUND"


def test_unknown_route_method_and_bad_json_use_the_envelope(owner: User) -> None:
    key = api_key_create(team=personal_team(owner), user=owner).raw
    client = APIClient(HTTP_AUTHORIZATION=f"Bearer {key}")
    missing = client.get("/start/nothing-here")
    assert missing.status_code == 404 and missing.json()["code"] == "NOT_FOUND"
    wrong_method = client.get("/start/start-session")
    assert wrong_method.status_code == 405 and wrong_method.json()["code"] == "METHOD_NOT_ALLOWED"
    bad_json = client.post("/start/start-session", data="{nope", content_type="application/json")
    assert bad_json.status_code == 400 and bad_json.json()["code"] == "INVALID_JSON"
    assert bad_json.json()["success"] is False


@override_settings(ENIGMA_RATE_LIMITS={"start-session": 2})
def test_rate_limit_headers_and_429_shared_by_all_team_keys(owner: User) -> None:
    team = personal_team(owner)
    keys = [api_key_create(team=team, user=owner).raw for _ in range(2)]
    responses = [
        APIClient().post("/start/start-session", {"bogus": 1}, format="json", HTTP_AUTHORIZATION=f"Bearer {key}")
        for key in (keys[0], keys[1], keys[0])
    ]
    assert [r.status_code for r in responses] == [400, 400, 429]
    assert responses[0]["X-RateLimit-Limit"] == "2"
    assert responses[0]["X-RateLimit-Remaining"] == "1"
    assert responses[1]["X-RateLimit-Remaining"] == "0"
    limited = responses[2]
    assert int(limited["Retry-After"]) >= 1
    assert int(limited["X-RateLimit-Reset"]) > 0
    assert limited.json()["message"] == "Rate limit exceeded. Please try again later."
    assert limited.json()["code"] == "RATE_LIMIT_EXCEEDED"


def test_create_api_key_command_reuses_the_user_and_credits_the_ledger() -> None:
    out1, out2 = io.StringIO(), io.StringIO()
    call_command("create_api_key", "--email", "cli@example.com", "--balance", "2.5", stdout=out1)
    call_command("create_api_key", "--email", "cli@example.com", stdout=out2)
    key1, key2 = out1.getvalue().strip(), out2.getvalue().strip()
    assert key1.startswith("enig_") and key2.startswith("enig_") and key1 != key2
    assert User.objects.filter(email="cli@example.com").count() == 1
    team = personal_team(User.objects.get(email="cli@example.com"))
    assert team.balance_micros == 2_500_000
    assert team.ledger.get().amount_micros == 2_500_000
