"""The ledger under concurrent writers, and billing_reconcile's verdict."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from accounts.models import Team
from billing.models import LedgerEntry
from billing.selectors import ledger_mismatches, team_balance_micros
from billing.services import adjustment_post, ledger_post
from sessions_app.metering import session_meter
from sessions_app.models import BrowserSession


def run_threads(count: int, work: Callable[[int], None]) -> list[BaseException]:
    """Run work(0..count-1) in threads started together; return what they raised."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def target(index: int) -> None:
        try:
            barrier.wait()
            work(index)
        except BaseException as exc:  # collected for the test to assert on
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return errors


def test_ledger_post_is_idempotent_per_key(account: dict[str, Any]) -> None:
    team = account["team"]
    first = ledger_post(team=team, amount_micros=-1_234, kind="usage", idempotency_key="k1")
    again = ledger_post(team=team, amount_micros=-1_234, kind="usage", idempotency_key="k1")
    assert first is not None and first.balance_after_micros == 10_000_000 - 1_234
    assert again is None
    assert team_balance_micros(team=team) == 10_000_000 - 1_234


def test_entries_are_append_only(account: dict[str, Any]) -> None:
    entry = LedgerEntry.objects.get(team=account["team"])
    entry.amount_micros = 1
    with pytest.raises(ValueError):
        entry.save()
    with pytest.raises(ValueError):
        entry.delete()


def test_ledger_post_rejects_unknown_kinds_and_non_integer_amounts(account: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ledger_post(team=account["team"], amount_micros=1, kind="gift", idempotency_key="x")
    with pytest.raises(ValueError):
        ledger_post(
            team=account["team"],
            amount_micros=1.5,  # type: ignore[arg-type]
            kind="usage",
            idempotency_key="y",
        )


def test_two_workers_debiting_one_team_lose_nothing(account: dict[str, Any], reconcile: Callable[[], Any]) -> None:
    """Eight writers, 25 debits each, every key also posted by a second writer."""
    team = account["team"]

    def work(index: int) -> None:
        for n in range(25):
            key = f"debit:{(index // 2)}:{n}"  # writers 2k and 2k+1 race on the same keys
            ledger_post(team=team.pk, amount_micros=-(1_000 + n), kind="usage", idempotency_key=key)

    assert run_threads(8, work) == []
    expected = 10_000_000 - 4 * sum(1_000 + n for n in range(25))
    assert team_balance_micros(team=team) == expected
    assert LedgerEntry.objects.filter(team=team, kind="usage").count() == 100
    balances = list(
        LedgerEntry.objects.filter(team=team).order_by("id").values_list("amount_micros", "balance_after_micros")
    )
    running = 0
    for amount, after in balances:
        running += amount
        assert after == running  # every entry saw the one before it
    assert ledger_mismatches() == []
    result = reconcile()
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def test_concurrent_meters_of_sessions_of_one_team_charge_exactly(
    account: dict[str, Any], reconcile: Callable[[], Any]
) -> None:
    team = account["team"]
    created = timezone.now() - timedelta(minutes=3)
    sessions = []
    for _ in range(3):
        session = BrowserSession.objects.create(
            team=team,
            api_key=account["api_key"],
            state=BrowserSession.State.TERMINATED,
            input_tokens=100_000,
            output_tokens=10_000,
        )
        BrowserSession.objects.filter(pk=session.pk).update(
            created_at=created, started_at=created, generation=1, ended_at=created + timedelta(minutes=2)
        )
        sessions.append(session.pk)

    def work(index: int) -> None:
        for _ in range(5):
            session_meter(session_id=sessions[index % 3])

    assert run_threads(6, work) == []
    per_session = 40_000 + 60_000 + 27_000  # two minutes + 100k in + 10k out
    assert team_balance_micros(team=team) == 10_000_000 - 3 * per_session
    assert LedgerEntry.objects.filter(team=team, kind="usage").count() == 3
    assert reconcile().returncode == 0


def test_reconcile_fails_when_a_balance_moved_outside_the_ledger(
    account: dict[str, Any], reconcile: Callable[[], Any]
) -> None:
    Team.objects.filter(pk=account["team"].pk).update(balance_micros=123)
    result = reconcile()
    assert result.returncode != 0
    assert f"team {account['team'].pk}: cached balance 123" in result.stderr
    assert [m.team_id for m in ledger_mismatches()] == [account["team"].pk]


def test_adjustment_is_an_entry_with_its_reason_posted_once(account: dict[str, Any]) -> None:
    team, user = account["team"], account["user"]
    entry = adjustment_post(
        team=team, amount_micros=-250_000, reason="refund of a duplicate top-up", user=user, idempotency_key="form-1"
    )
    assert entry is not None
    assert (entry.kind, entry.amount_micros, entry.description, entry.created_by) == (
        "adjustment",
        -250_000,
        "refund of a duplicate top-up",
        user,
    )
    assert (
        adjustment_post(team=team, amount_micros=-250_000, reason="again", user=user, idempotency_key="form-1") is None
    )
    with pytest.raises(ValueError):
        adjustment_post(team=team, amount_micros=5, reason=" ", user=user, idempotency_key="form-2")
    assert team_balance_micros(team=team) == 10_000_000 - 250_000
