"""Issue 16: ``Store.attempt_facts`` and ``Store.recent_durations`` on both backends: finished
attempts with their task's labels, repo, later round and pull request fate."""

from __future__ import annotations

import datetime as dt

from adw_modules.queue.store import Store
from adw_modules.queue.tasks import AttemptEnd, AttemptStart, NewTask, TaskState, Transition

T0 = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)
LEASE = dt.timedelta(minutes=5)


def run_attempt(store: Store, task_id: int, at: dt.datetime, outcome: str, seconds: float, cost: float) -> None:
    task = store.claim_task("o", at + LEASE, at, exclude_ids=[])
    assert task is not None and task.id == task_id
    start = AttemptStart(provider="alpha", model="m1", rule="learn", routing={}, config_fingerprint="c", host="h")
    attempt = store.start_attempt(task_id, "o", start, at)
    assert attempt is not None
    end = AttemptEnd(outcome, error_kind=None if outcome == "success" else "max_turns", cost_usd=cost)
    state = TaskState.SUCCEEDED if outcome == "success" else TaskState.FAILED
    assert store.finish_attempt(attempt.id, "o", end, Transition(state), at + dt.timedelta(seconds=seconds))


def test_attempt_facts_carry_the_tasks_fate(store: Store) -> None:
    task, _ = store.upsert_task(
        NewTask(source="github", external_id="o/r#1", title="t", labels=("bug", "ui"), repo="o/r")
    )
    run_attempt(store, task.id, T0, "success", 30, 0.25)
    store.update_source_state(task.id, {"pr_number": 7, "pr_fate": "merged"}, T0)
    assert store.requeue_task(task.id, T0 + dt.timedelta(hours=1), reset_retries=True)  # a follow-up round
    run_attempt(store, task.id, T0 + dt.timedelta(hours=1), "failed", 90, 0.5)

    first, second = store.attempt_facts(T0 - dt.timedelta(days=1))
    assert (first.target, first.rule, first.outcome, first.cost_usd) == ("alpha:m1", "learn", "success", 0.25)
    assert first.labels == ("bug", "ui") and first.repo == "o/r" and first.pr_fate == "merged"
    assert first.duration_s == 30 and first.followed_up  # a round began after it ended
    assert (second.number, second.error_kind, second.followed_up) == (2, "max_turns", False)
    assert store.attempt_facts(T0 + dt.timedelta(minutes=30)) == [second]  # started since
    assert store.recent_durations() == {"alpha": [30.0, 90.0]}
    assert store.recent_durations(per_provider=1) == {"alpha": [90.0]}
