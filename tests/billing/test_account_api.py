"""GET /account and GET /account/usage."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import time_machine
from django.test import Client

from accounts.services import api_key_create
from billing.services import ledger_post

NOW = datetime(2026, 5, 20, 15, 0, tzinfo=UTC)


def get(account: dict[str, Any], path: str, key: str | None = None) -> Any:
    return Client().get(path, HTTP_AUTHORIZATION=f"Bearer {key or account['key']}")


def usage(
    account: dict[str, Any],
    when: datetime,
    micros: int,
    *,
    session: str = "s1",
    api_key: Any = None,
    tokens: tuple[int, int] = (0, 0),
    ms: int = 0,
) -> None:
    with time_machine.travel(when, tick=False):
        ledger_post(
            team=account["team"],
            amount_micros=-micros,
            kind="usage",
            idempotency_key=f"t:{when.isoformat()}:{session}:{micros}",
            session_id=session,
            api_key=api_key or account["api_key"],
            input_tokens=tokens[0],
            output_tokens=tokens[1],
            compute_ms=ms,
        )


@pytest.fixture
def history(account: dict[str, Any]) -> dict[str, Any]:
    """Usage in April and May, from two keys and three sessions."""
    other = api_key_create(team=account["team"], user=account["user"], name="ci").api_key
    usage(account, datetime(2026, 4, 30, 23, 59, tzinfo=UTC), 7_000, session="s0")
    usage(account, datetime(2026, 5, 1, 0, 0, tzinfo=UTC), 1_000, tokens=(1_000, 100), ms=3_000)
    usage(account, datetime(2026, 5, 1, 9, 0, tzinfo=UTC), 2_500, session="s2", api_key=other)
    usage(account, datetime(2026, 5, 19, 9, 0, tzinfo=UTC), 500, ms=1_500)
    return {**account, "other_key": other}


def test_account_shows_team_balance_and_this_months_usage(history: dict[str, Any]) -> None:
    with time_machine.travel(NOW, tick=False):
        body = get(history, "/account").json()
    assert body["success"] is True
    assert body["team"] == {"id": history["team"].pk, "name": history["team"].name}
    assert body["balanceMicros"] == 10_000_000 - 11_000
    assert body["balance"] == 9.989
    assert body["usage"]["costMicros"] == 4_000  # April's 7000 is not this month
    assert body["usage"]["cost"] == 0.004
    assert body["usage"]["from"] == "2026-05-01T00:00:00Z"
    assert (body["usage"]["inputTokens"], body["usage"]["outputTokens"]) == (1_000, 100)
    assert body["usage"]["computeTime"] == 4.5
    assert body["prices"] == {"inputPerMillionTokens": 0.6, "outputPerMillionTokens": 2.7, "computePerMinute": 0.02}


def test_every_key_of_a_team_sees_the_team_balance(history: dict[str, Any]) -> None:
    raw = api_key_create(team=history["team"], user=history["user"], name="third").raw
    assert get(history, "/account", key=raw).json()["balanceMicros"] == 10_000_000 - 11_000


def test_usage_by_day(history: dict[str, Any]) -> None:
    with time_machine.travel(NOW, tick=False):
        body = get(history, "/account/usage?from=2026-04-30&to=2026-05-19&group=day").json()
    assert [(row["day"], row["costMicros"]) for row in body["usage"]] == [
        ("2026-04-30", 7_000),
        ("2026-05-01", 3_500),
        ("2026-05-19", 500),
    ]
    assert body["total"]["costMicros"] == 11_000
    assert (body["from"], body["to"], body["group"]) == ("2026-04-30", "2026-05-19", "day")


def test_usage_defaults_to_this_month_by_day(history: dict[str, Any]) -> None:
    with time_machine.travel(NOW, tick=False):
        body = get(history, "/account/usage").json()
    assert (body["from"], body["to"]) == ("2026-05-01", "2026-05-20")
    assert body["total"]["costMicros"] == 4_000


def test_usage_by_key_and_by_session(history: dict[str, Any]) -> None:
    with time_machine.travel(NOW, tick=False):
        by_key = get(history, "/account/usage?from=2026-05-01&group=key").json()
        by_session = get(history, "/account/usage?from=2026-05-01&group=session").json()
    assert [(row["apiKey"]["id"], row["costMicros"]) for row in by_key["usage"]] == [
        (history["other_key"].pk, 2_500),
        (history["api_key"].pk, 1_500),
    ]
    assert by_key["usage"][0]["apiKey"]["name"] == "ci"
    assert [(row["sessionId"], row["costMicros"]) for row in by_session["usage"]] == [("s2", 2_500), ("s1", 1_500)]


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("from=yesterday", "from"),
        ("to=2026-13-01", "to"),
        ("from=2026-05-10&to=2026-05-01", "to"),
        ("from=2024-01-01&to=2026-01-01", "to"),
        ("group=week", "group"),
    ],
)
def test_usage_rejects_bad_parameters_naming_them(account: dict[str, Any], query: str, parameter: str) -> None:
    response = get(account, f"/account/usage?{query}")
    assert response.status_code == 400
    body = response.json()
    assert body["success"] is False and body["code"] == "INVALID_PARAMETER"
    assert body["details"]["parameter"] == parameter
    assert f"'{parameter}'" in body["message"]


def test_account_needs_an_api_key(account: dict[str, Any]) -> None:
    assert Client().get("/account").status_code == 401
    assert get(account, "/account/usage", key="enig_nope").status_code == 401
