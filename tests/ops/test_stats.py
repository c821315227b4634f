"""Issue 16: the statistics behind ``adw stats`` and the learned selector's history
(``ops.stats``, ``routing.learning.success_of``), on hand-made attempt facts."""

from __future__ import annotations

import datetime as dt

import pytest

from adw_modules.ops.stats import group_stats, percentile, wilson
from adw_modules.queue.store import AttemptFact
from adw_modules.routing.learning import success_of

T0 = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


def fact(task: int, number: int, target: str = "a:m", outcome: str = "success", **kw: object) -> AttemptFact:
    provider, model = target.split(":")
    values: dict[str, object] = {
        "task_id": task,
        "number": number,
        "provider": provider,
        "model": model,
        "rule": "r",
        "outcome": outcome,
        "error_kind": None if outcome == "success" else "crashed",
        "cost_usd": 0.1,
        "started_at": T0,
        "ended_at": T0 + dt.timedelta(seconds=10 * number),
        "failover_from": None,
        "labels": ("bug",),
        "repo": "o/r",
        "task_state": "succeeded",
        "round_started_at": None,
        "pr_fate": None,
    }
    values.update(kw)
    return AttemptFact(**values)  # type: ignore[arg-type]


def test_wilson_interval_matches_the_textbook_values() -> None:
    low, high = wilson(8, 10)
    assert (round(low, 3), round(high, 3)) == (0.490, 0.943)
    assert wilson(0, 0) == (0.0, 1.0)
    low, high = wilson(0, 5)
    assert low == 0.0 and round(high, 3) == 0.434
    low, high = wilson(5, 5)
    assert round(low, 3) == 0.566 and high == pytest.approx(1.0)


def test_percentile_interpolates() -> None:
    assert percentile([], 0.5) is None
    assert percentile([5.0], 0.9) == 5.0
    assert percentile([1, 2, 3, 4], 0.5) == 2.5
    assert percentile(list(range(1, 11)), 0.9) == pytest.approx(9.1)


@pytest.mark.parametrize(
    ("outcome", "kind", "followed_up", "fate", "mode", "expected"),
    [
        ("success", None, False, None, "attempt", True),
        ("failed", "max_turns", False, None, "attempt", False),
        ("failed", "rate_limited", False, None, "attempt", None),  # a provider fault says nothing of the model
        ("cancelled", "cancelled", False, None, "task", None),
        ("success", None, True, None, "attempt", True),
        ("success", None, True, None, "task", False),  # a follow-up round was needed
        ("success", None, False, None, "task", True),
        ("success", None, False, "merged", "merged", True),
        ("success", None, False, "closed", "merged", False),
        ("success", None, False, "open", "merged", None),
        ("success", None, False, None, "merged", None),
        ("failed", "crashed", False, "merged", "merged", False),
    ],
)
def test_success_per_mode(
    outcome: str, kind: str | None, followed_up: bool, fate: str | None, mode: str, expected: bool | None
) -> None:
    assert success_of(outcome, kind, followed_up, fate, mode) is expected


def test_group_stats_counts_rates_costs_durations_failovers_and_retries() -> None:
    facts = [
        fact(1, 1, "a:m", "failed"),  # then retried on a:m
        fact(1, 2, "a:m", "failed", error_kind="rate_limited"),  # then failed over to b:n
        fact(1, 3, "b:n", "success", failover_from="a:m", cost_usd=0.5),
        fact(2, 1, "a:m", "success", cost_usd=None),
    ]
    by = {g.key: g for g in group_stats(facts, "target", "attempt")}
    a, b = by["a:m"], by["b:n"]
    assert (a.attempts, a.counted, a.successes) == (3, 2, 1)  # the rate limit is not counted
    assert a.success_rate == 0.5 and a.cost_per_success == pytest.approx(0.2)
    assert (a.retry_rate, a.failover_rate) == (pytest.approx(1 / 3), pytest.approx(1 / 3))
    assert a.median_s == 10.0 and a.p90_s == pytest.approx(18.0)
    assert (b.successes, b.cost_per_success, b.failover_rate, b.retry_rate) == (1, 0.5, 0.0, 0.0)
    assert a.follow_up_rate == 0.0 and b.follow_up_rate == 0.0
    again = fact(3, 1, "b:n", round_started_at=T0 + dt.timedelta(hours=1))  # a follow-up asked for later
    (b2,) = [g for g in group_stats([*facts, again], "target", "attempt") if g.key == "b:n"]
    assert b2.follow_up_rate == 0.5
    (task_mode,) = [g for g in group_stats([*facts, again], "target", "task") if g.key == "b:n"]
    assert (task_mode.successes, task_mode.counted) == (1, 2)  # "task": the followed-up one failed
    with pytest.raises(ValueError, match="by must be one of"):
        group_stats(facts, "colour", "attempt")


def test_label_groups_overlap_and_unlabelled_has_its_own_row() -> None:
    facts = [fact(1, 1, labels=("bug", "ui")), fact(2, 1, labels=())]
    assert [(g.key, g.attempts) for g in group_stats(facts, "label", "attempt")] == [
        ("(unlabelled)", 1),
        ("bug", 1),
        ("ui", 1),
    ]
