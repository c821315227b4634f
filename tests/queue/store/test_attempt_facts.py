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


# ---------------------------------------------------------------- incremental reloads
def learning_config(make_config):
    from adw_modules.config.schema import load_config

    return load_config(
        make_config(
            """
            [[routing.rules]]
            name = "learn"
            priority = 1
            model_select = { pick = "learned", candidates = ["alpha:m1"] }
            """,
            base=True,
        )
    )


def start(store: Store, task_id: int, at: dt.datetime) -> int:
    task = store.claim_task("o", at + LEASE, at, exclude_ids=[])
    assert task is not None and task.id == task_id
    begun = AttemptStart(provider="alpha", model="m1", rule="learn", routing={}, config_fingerprint="c", host="h")
    attempt = store.start_attempt(task_id, "o", begun, at)
    assert attempt is not None
    return attempt.id


def counts(stats) -> tuple[int, int]:
    cell = stats.cell("rule=learn", "alpha:m1")
    return (0, 0) if cell is None else (cell.successes, cell.failures)


def test_incremental_reloads_count_each_attempt_once(store: Store, make_config, monkeypatch) -> None:
    """With no margin the watermark stays below a running attempt, so it is read when it ends
    though newer ones were read before; with the default margin the same ids are read again
    and none is counted twice; an attempt the coordinator recorded itself is not counted again."""
    from adw_modules.ops.stats import load_learning
    from adw_modules.queue.store import learning as store_learning
    from adw_modules.routing.learning import Fact, LearningStats

    config = learning_config(make_config)
    ids = [store.upsert_task(NewTask(source="local", external_id=f"t{i}", title="t"))[0].id for i in range(4)]
    run_attempt(store, ids[0], T0, "success", 10, 0.1)
    stats = LearningStats()
    now = T0 + dt.timedelta(days=1)
    assert load_learning(store, stats, config, now) == 1
    slow = start(store, ids[1], T0 + dt.timedelta(minutes=1))  # still running during the next reloads
    run_attempt(store, ids[2], T0 + dt.timedelta(minutes=2), "failed", 10, 0.1)
    monkeypatch.setattr(store_learning, "WATERMARK_MARGIN", 0)
    assert load_learning(store, stats, config, now, incremental=True) == 1
    assert counts(stats) == (1, 1) and stats.watermark == slow - 1
    end = AttemptEnd("success", cost_usd=0.2)
    assert store.finish_attempt(slow, "o", end, Transition(TaskState.SUCCEEDED), T0 + dt.timedelta(minutes=5))
    assert load_learning(store, stats, config, now, incremental=True) == 1  # the slow one; not the failed again
    assert counts(stats) == (2, 1)
    monkeypatch.undo()
    mine = start(store, ids[3], T0 + dt.timedelta(minutes=6))
    end = AttemptEnd("success", cost_usd=0.3)
    assert store.finish_attempt(mine, "o", end, Transition(TaskState.SUCCEEDED), T0 + dt.timedelta(minutes=7))
    stats.record(Fact("rule=learn", "alpha:m1", True, 0.3, mine))  # as the coordinator does when it ends
    assert load_learning(store, stats, config, now, incremental=True) == 0  # all four re-read (margin), none new
    assert counts(stats) == (3, 1)
    full = LearningStats()
    assert load_learning(store, full, config, now) == 4 and counts(full) == (3, 1)


def test_an_attempt_ending_during_a_full_reload_is_kept(store: Store, make_config) -> None:
    from adw_modules.ops.stats import learning_facts
    from adw_modules.routing.learning import Fact, LearningStats

    config = learning_config(make_config)
    task, _ = store.upsert_task(NewTask(source="local", external_id="t", title="t"))
    run_attempt(store, task.id, T0, "success", 10, 0.1)
    stats = LearningStats()
    stats.begin_load()
    facts = learning_facts(store.attempt_facts(T0 - dt.timedelta(days=1)), config)  # the read
    stats.record(Fact("rule=learn", "alpha:m1", False, 0.1, 999))  # ends after the read, before the swap
    stats.record(Fact("rule=learn", "alpha:m1", True, 0.1, facts[0].attempt_id))  # in the read already
    stats.load(facts, None, store.learning_watermark())
    assert counts(stats) == (1, 1)
