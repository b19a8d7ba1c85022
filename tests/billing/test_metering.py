"""Exact costs in micro-dollars for known tokens and durations, and exactly-once metering."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.utils import timezone

from billing.models import LedgerEntry, Price
from billing.selectors import current_price, meter_interval_micros, price_at, team_balance_micros
from sessions_app.events import event_emit
from sessions_app.metering import session_cost_micros, session_meter, sessions_meter_ended
from sessions_app.models import BrowserSession

T0 = datetime(2026, 3, 10, 12, 0, 0, tzinfo=UTC)


def test_default_prices_are_the_contract_ones(db: Any) -> None:
    price = current_price()
    assert price.input_per_million_micros == 600_000
    assert price.output_per_million_micros == 2_700_000
    assert price.compute_per_minute_micros == 20_000


@pytest.mark.parametrize(
    ("input_tokens", "output_tokens", "compute_ms", "micros"),
    [
        (1_000_000, 0, 0, 600_000),  # $0.60 per 1M input
        (0, 1_000_000, 0, 2_700_000),  # $2.70 per 1M output
        (0, 0, 60_000, 20_000),  # $0.02 per minute
        (0, 0, 1_000, 333),  # one second: 333.33 µ$, rounded down
        (0, 0, 3_000, 1_000),  # three seconds: exactly 1000 µ$
        (12_345, 6_789, 0, 25_737),  # 7407 + 18330.3
        (12_345, 6_789, 90_000, 55_737),  # plus a minute and a half
        (1, 1, 1, 3),  # 3.3 µ$ of tokens + 0.33 µ$ of compute, rounded down
    ],
)
def test_cost_in_micros(db: Any, input_tokens: int, output_tokens: int, compute_ms: int, micros: int) -> None:
    price = current_price()
    assert price.cost_micros(input_tokens=input_tokens, output_tokens=output_tokens, compute_ms=compute_ms) == micros


def test_price_in_effect_is_the_newest_not_after_the_moment(db: Any) -> None:
    Price.objects.all().delete()
    Price.objects.create(effective_from=T0, compute_per_minute_micros=60_000)
    Price.objects.create(effective_from=T0 + timedelta(days=1), compute_per_minute_micros=120_000)
    assert price_at(T0 - timedelta(seconds=1)).compute_per_minute_micros == 20_000  # defaults
    assert price_at(T0 + timedelta(hours=1)).compute_per_minute_micros == 60_000
    assert price_at(T0 + timedelta(days=2)).compute_per_minute_micros == 120_000


def _session(account: dict[str, Any]) -> BrowserSession:
    """A session a worker made active at once (its browser ready from now)."""
    return BrowserSession.objects.create(
        team=account["team"],
        api_key=account["api_key"],
        state=BrowserSession.State.ACTIVE,
        generation=1,
        started_at=timezone.now(),
    )


def test_session_is_charged_incrementally_to_the_exact_total(account: dict[str, Any]) -> None:
    team = account["team"]
    with time_machine.travel(T0, tick=False) as clock:
        session = _session(account)
        clock.move_to(T0 + timedelta(seconds=3))
        # What is left beyond the next interval of the team's one live session.
        assert session_meter(session_id=session.pk) == 10_000_000 - 1_000 - meter_interval_micros()
        # Idle time counts; tokens of a task arrive meanwhile.
        BrowserSession.objects.filter(pk=session.pk).update(input_tokens=12_345, output_tokens=6_789)
        clock.move_to(T0 + timedelta(seconds=60))
        session_meter(session_id=session.pk, task_id="task-1")
        session_meter(session_id=session.pk)  # nothing new: posts nothing
        clock.move_to(T0 + timedelta(seconds=90, milliseconds=400))
        BrowserSession.objects.filter(pk=session.pk).update(
            state=BrowserSession.State.TERMINATED, ended_at=T0 + timedelta(seconds=90)
        )
        session_meter(session_id=session.pk)
        clock.move_to(T0 + timedelta(hours=1))
        session_meter(session_id=session.pk)  # ended: the clock no longer matters

    entries = list(LedgerEntry.objects.filter(session_id=session.pk).order_by("id"))
    assert [e.amount_micros for e in entries] == [-1_000, -(20_000 - 1_000 + 25_737), -10_000]
    assert [e.compute_ms for e in entries] == [3_000, 57_000, 30_000]
    assert [(e.input_tokens, e.output_tokens) for e in entries] == [(0, 0), (12_345, 6_789), (0, 0)]
    assert entries[1].task_id == "task-1"
    assert {e.api_key_id for e in entries} == {account["api_key"].pk}
    assert [e.idempotency_key for e in entries] == [
        f"session:{session.pk}:usage:1000",
        f"session:{session.pk}:usage:45737",
        f"session:{session.pk}:usage:55737",
    ]
    session.refresh_from_db()
    assert session.cost_micros == session_cost_micros(session) == 55_737
    assert team_balance_micros(team=team) == 10_000_000 - 55_737


def test_session_is_charged_at_the_price_of_its_creation(account: dict[str, Any]) -> None:
    Price.objects.all().delete()
    Price.objects.create(effective_from=T0 - timedelta(days=1), compute_per_minute_micros=60_000)
    with time_machine.travel(T0, tick=False) as clock:
        session = _session(account)
        Price.objects.create(effective_from=T0 + timedelta(seconds=1), compute_per_minute_micros=1)
        clock.move_to(T0 + timedelta(seconds=10))
        session_meter(session_id=session.pk)
    assert LedgerEntry.objects.get(session_id=session.pk).amount_micros == -10_000


def test_a_lost_write_is_rolled_back_and_charged_once_later(
    account: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash after the entry but before the session's counters rolls both back."""
    with time_machine.travel(T0, tick=False) as clock:
        session = _session(account)
        clock.move_to(T0 + timedelta(seconds=6))

        from django.db.models import QuerySet

        real_update = QuerySet.update

        def crash(self: QuerySet[Any], **kwargs: Any) -> int:
            if self.model is BrowserSession and "cost_micros" in kwargs:
                raise RuntimeError("worker died")
            return real_update(self, **kwargs)

        monkeypatch.setattr(QuerySet, "update", crash)
        with pytest.raises(RuntimeError):
            session_meter(session_id=session.pk)
        monkeypatch.undo()
        assert not LedgerEntry.objects.filter(session_id=session.pk).exists()
        session_meter(session_id=session.pk)
        session_meter(session_id=session.pk)
    assert [e.amount_micros for e in LedgerEntry.objects.filter(session_id=session.pk)] == [-2_000]
    assert team_balance_micros(team=account["team"]) == 10_000_000 - 2_000


def test_sessions_ended_without_their_final_charge_are_caught_up(account: dict[str, Any]) -> None:
    with time_machine.travel(T0, tick=False) as clock:
        billed, unbilled, old = _session(account), _session(account), _session(account)
        clock.move_to(T0 + timedelta(seconds=30))
        for session in (billed, unbilled, old):
            session_meter(session_id=session.pk)
        clock.move_to(T0 + timedelta(seconds=45))
        # The worker died after ending `unbilled`, before its final meter.
        BrowserSession.objects.filter(pk__in=[billed.pk, unbilled.pk, old.pk]).update(
            state=BrowserSession.State.TERMINATED, ended_at=T0 + timedelta(seconds=45)
        )
        session_meter(session_id=billed.pk)
        clock.move_to(T0 + timedelta(hours=2))
        BrowserSession.objects.filter(pk=old.pk).update(ended_at=T0 + timedelta(minutes=50))
        assert sessions_meter_ended(within=timedelta(minutes=30)) == 0  # `old` is out of range
        assert sessions_meter_ended(within=timedelta(hours=3)) == 2
        assert sessions_meter_ended(within=timedelta(hours=3)) == 0
    costs = {s.pk: s.cost_micros for s in BrowserSession.objects.all()}
    assert costs == {billed.pk: 15_000, unbilled.pk: 15_000, old.pk: 50 * 20_000}
    assert team_balance_micros(team=account["team"]) == 10_000_000 - 30_000 - 1_000_000


def _update(session: BrowserSession, **fields: Any) -> None:
    BrowserSession.objects.filter(pk=session.pk).update(**fields)


def test_time_queued_for_a_worker_and_time_orphaned_are_not_billed(account: dict[str, Any]) -> None:
    """Compute runs while a browser is ready: from each activation until the sweep finds the
    worker lost, or the end (the state changes and events the runner and the sweep write)."""

    def at(seconds: int) -> datetime:
        return T0 + timedelta(seconds=seconds)

    def activate(seconds: int, generation: int) -> None:
        clock.move_to(at(seconds))
        fields: dict[str, Any] = {"state": BrowserSession.State.ACTIVE, "orphaned_at": None, "generation": generation}
        if generation == 1:
            fields["started_at"] = at(seconds)
        _update(session, **fields)
        event_emit(session_id=session.pk, name="message", payload={"type": "session_active", "sessionId": session.pk})

    def orphan(seconds: int) -> None:
        clock.move_to(at(seconds))
        _update(session, state=BrowserSession.State.ORPHANED, orphaned_at=at(seconds))
        event_emit(
            session_id=session.pk,
            name="instance:disconnected",
            payload={"type": "instance:disconnected", "gracePeriod": 300_000},
        )

    def billed_ms(seconds: int) -> int:
        clock.move_to(at(seconds))
        session_meter(session_id=session.pk)
        return BrowserSession.objects.get(pk=session.pk).charged_compute_ms

    with time_machine.travel(T0, tick=False) as clock:
        session = BrowserSession.objects.create(team=account["team"], api_key=account["api_key"])
        assert billed_ms(20) == 0  # 20 s waiting for a worker
        activate(20, generation=1)
        assert billed_ms(30) == 10_000
        orphan(40)
        assert billed_ms(100) == 20_000  # 60 s orphaned: nothing
        _update(session, generation=2)  # another worker claims it ...
        assert billed_ms(101) == 20_000
        activate(102, generation=2)  # ... and has the browser ready
        assert billed_ms(105) == 23_000
        orphan(110)
        clock.move_to(at(500))  # failed after the grace period, while orphaned
        _update(session, state=BrowserSession.State.FAILED, ended_at=at(500))
        assert billed_ms(600) == 28_000
    assert sum(LedgerEntry.objects.filter(session_id=session.pk).values_list("amount_micros", flat=True)) == (
        -price_at(T0).compute_cost_micros(compute_ms=28_000)
    )
    assert team_balance_micros(team=account["team"]) == 10_000_000 - 9_333
