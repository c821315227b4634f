"""The coordinator's in-memory provider picture: its own starts and ends exactly, the others'
as of the last reconciliation, deferred recent outcomes, and the turn of the day."""

from __future__ import annotations

import datetime as dt

from adw_modules.queue.provider_view import ProviderView, append_recent, clean, with_recent
from adw_modules.queue.tasks import CircuitState, ProviderSnapshot, ProviderState

T0 = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)
DAY = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


def snap(**kw: object) -> ProviderSnapshot:
    values: dict[str, object] = {"states": {}, "running": {}, "started": {}, "spent": {}}
    values.update(kw)
    return ProviderSnapshot(**values)  # type: ignore[arg-type]


def test_own_starts_and_ends_count_at_once_and_others_come_from_the_snapshot() -> None:
    view = ProviderView()
    # The store sees 3 running on a: 1 of them ours.
    view.reconcile(snap(running={"a": 3}), {"a": 1}, DAY, T0)
    assert view.running() == {"a": 3}
    view.started("a", T0)
    view.started("b", T0)
    assert view.running() == {"a": 4, "b": 1}
    view.ended("a", 0.5, None)
    view.ended("b", None, None)
    assert view.running() == {"a": 3, "b": 0}
    assert view.spent_today(DAY) == {"a": 0.5}


def test_starts_older_than_a_minute_drop_out_of_the_rate_window() -> None:
    view = ProviderView()
    old, recent = T0 - dt.timedelta(seconds=50), T0 - dt.timedelta(seconds=5)
    view.reconcile(snap(started={"a": [old, recent, T0 - dt.timedelta(minutes=5)]}), {}, DAY, T0)
    assert view.started_last_minute(T0) == {"a": 2}
    view.started("a", T0)
    assert view.started_last_minute(T0 + dt.timedelta(seconds=15)) == {"a": 2}  # `old` aged out
    assert view.started_last_minute(T0 + dt.timedelta(seconds=61)) == {}


def test_spend_restarts_at_the_turn_of_the_day() -> None:
    view = ProviderView()
    view.reconcile(snap(spent={"a": 4.0}), {}, DAY, T0)
    view.ended("a", 1.0, T0)
    assert view.spent_today(DAY) == {"a": 5.0}
    tomorrow = DAY + dt.timedelta(days=1)
    assert view.spent_today(tomorrow) == {}
    view.ended("a", 2.0, tomorrow + dt.timedelta(hours=1))
    view.ended("a", 9.0, T0)  # started yesterday: yesterday's spend
    assert view.spent_today(tomorrow) == {"a": 2.0}


def test_deferred_outcomes_are_taken_once_and_given_back_on_failure() -> None:
    view = ProviderView()
    view.reconcile(snap(states={"a": ProviderState("a", recent=[False])}), {}, DAY, T0)
    view.defer_recent("a", True)
    view.defer_recent("a", True)
    state = view.state("a")
    assert state is not None and state.recent == [False, True, True]  # shown at once
    assert view.take_pending("a") == {"a": [True, True]}
    assert view.take_pending() == {}
    view.give_back({"a": [True]})
    view.defer_recent("a", False)
    assert view.take_pending() == {"a": [True, False]}


def test_reconciling_is_due_after_the_interval_or_an_announcement() -> None:
    view = ProviderView()
    every = dt.timedelta(seconds=2)
    assert view.due(T0, every)
    view.reconcile(snap(), {}, DAY, T0)
    assert not view.due(T0 + dt.timedelta(seconds=1), every)
    assert view.due(T0 + every, every)
    assert view.due(T0 - dt.timedelta(seconds=1), every)  # the clock went back
    view.invalidate()
    assert view.due(T0, every)


def test_clean_is_what_a_success_would_not_change() -> None:
    assert clean(None) and clean(ProviderState("a", recent=[True, False]))
    for dirty in (
        ProviderState("a", consecutive_failures=1),
        ProviderState("a", circuit=CircuitState.HALF_OPEN),
        ProviderState("a", trips=1),
        ProviderState("a", cooldown_until=T0),
        ProviderState("a", probe_attempt_id=3),
        ProviderState("a", disabled_reason="auth"),
    ):
        assert not clean(dirty), dirty


def test_the_recent_window_keeps_the_newest_twenty() -> None:
    state = ProviderState("a", recent=[False] * 19)
    assert with_recent(state, [True, True]).recent == [False] * 18 + [True, True]
    assert append_recent([], state) is state
