"""Retention deletes old rows; the metric totals (sums over those rows) must not go down."""

from __future__ import annotations

import datetime as dt

import pytest

from adw_modules.queue.store import RECOVERED_EVENT, Store
from adw_modules.queue.tasks import AttemptEnd, AttemptStart, NewTask, TaskState, Transition

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
LEASE = dt.timedelta(minutes=5)


def finish(
    store: Store, key: str, when: dt.datetime, runs: list[tuple[str, AttemptEnd, float]], final: TaskState
) -> int:
    """A task whose attempts ran on (provider, end, seconds) in turn, the last one moving it to ``final``."""
    task, _ = store.upsert_task(NewTask("github", key, key))
    previous = None
    for i, (provider, end, seconds) in enumerate(runs):
        claimed = store.claim_task("o", when + LEASE, when)
        assert claimed is not None and claimed.id == task.id
        start = AttemptStart(provider, "m", None, {}, "f", "h", failover_from=previous)
        att = store.start_attempt(task.id, "o", start, when)
        assert att is not None
        last = i == len(runs) - 1
        when += dt.timedelta(seconds=seconds)
        state = final if last else TaskState.QUEUED
        assert store.finish_attempt(att.id, "o", end, Transition(state), when)
        previous = f"{provider}:m"
    store.add_event(RECOVERED_EVENT, "lease expired; task requeued", task_id=task.id, now=when)
    return task.id


def comparable(agg: dict) -> dict:
    def rows(group: str, keys: tuple[str, ...]) -> dict:
        out = {}
        for r in agg[group]:
            values = {k: (round(v, 9) if isinstance(v, float) else v) for k, v in r.items() if k not in keys and v}
            out[tuple(r[k] for k in keys)] = values
        return out

    return {
        "by_target": rows("by_target", ("provider", "model", "outcome")),
        "by_duration": rows("by_duration", ("provider",)),
        "by_failover": rows("by_failover", ("provider", "failover_from")),
        "recoveries": agg["recoveries"],
    }


def test_metric_totals_survive_pruning_and_keep_growing(store: Store) -> None:
    rate_limited = AttemptEnd("rate_limited", error_kind="rate_limited", input_tokens=5, cost_usd=0.01)
    ok = AttemptEnd("success", input_tokens=100, output_tokens=20, cache_read_tokens=7, cost_usd=0.25)
    finish(store, "old-1", T0, [("a", rate_limited, 0.4), ("b", ok, 42.0)], TaskState.SUCCEEDED)
    finish(store, "old-2", T0, [("b", ok, 3.0)], TaskState.SUCCEEDED)
    recent = finish(store, "recent", T0 + dt.timedelta(days=60), [("b", ok, 700.0)], TaskState.SUCCEEDED)
    store.add_event(RECOVERED_EVENT, "an old recovery with no task", now=T0)
    before = comparable(store.attempt_aggregates())
    assert before["by_target"][("b", "m", "success")]["n"] == 3 and before["recoveries"] == 4

    counts = store.prune(T0 + dt.timedelta(days=30), T0 + dt.timedelta(days=30))
    assert counts == {"tasks": 2, "events": 1}
    assert [a.task_id for a in store.attempts_for(recent)] == [recent]
    assert comparable(store.attempt_aggregates()) == before  # nothing a counter counted is lost
    assert store.prune(T0 + dt.timedelta(days=30), T0 + dt.timedelta(days=30)) == {"tasks": 0, "events": 0}
    assert comparable(store.attempt_aggregates()) == before  # and nothing is counted twice

    finish(store, "new", T0 + dt.timedelta(days=61), [("b", ok, 1.0)], TaskState.SUCCEEDED)
    after = comparable(store.attempt_aggregates())
    assert after["by_target"][("b", "m", "success")]["n"] == 4
    assert after["by_target"][("b", "m", "success")]["cost"] == pytest.approx(1.0)
    assert after["by_duration"][("b",)]["n"] == 4 and after["recoveries"] == 5
