"""The store's contract, run against SQLite and PostgreSQL (see conftest.store)."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa

from adw_modules.outcomes import Usage
from adw_modules.queue.store import Store
from adw_modules.queue.store.schema import attempts as attempts_t
from adw_modules.queue.store.schema import tasks as tasks_t
from adw_modules.queue.tasks import (
    Attempt,
    AttemptEnd,
    AttemptStart,
    CircuitState,
    NewTask,
    ProviderState,
    Task,
    TaskState,
    Transition,
)
from tests.paths import REPO

UTC = dt.UTC
T0 = dt.datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
LEASE = dt.timedelta(seconds=60)
START = AttemptStart(
    provider="alpha",
    model="a-small",
    rule="default",
    routing={"chosen": "alpha:a-small"},
    config_fingerprint="cfg1",
    host="host-a",
)
R = TypeVar("R")


def new(n: int | str, priority: str = "normal", labels: tuple[str, ...] = ()) -> NewTask:
    return NewTask(source="github", external_id=str(n), title=f"task {n}", priority=priority, labels=labels)


def add(store: Store, n: int | str, **kw: Any) -> Task:
    task, created = store.upsert_task(new(n, **kw))
    assert created
    return task


_fresh_keys = itertools.count()


def claimed_with_attempt(
    store: Store, owner: str, now: dt.datetime = T0, start: AttemptStart = START, *, fresh: bool = True
) -> tuple[Task, Attempt]:
    """Claim a task (a new one unless fresh=False) and start an attempt; lease until now + LEASE."""
    if fresh:
        add(store, f"auto-{next(_fresh_keys)}")
    task = store.claim_task(owner, now + LEASE, now)
    assert task is not None
    attempt = store.start_attempt(task.id, owner, start, now)
    assert attempt is not None
    return task, attempt


def assert_lease(store: Store, value: dt.datetime | None, now: dt.datetime, until: dt.datetime) -> None:
    """A lease as the store keeps it: ``until`` on SQLite; on PostgreSQL as long, counted from the
    database's clock (a host clock, T0 here, must not decide when a lease runs out there)."""
    assert value is not None
    if store.dialect == "sqlite":
        assert value == until
    else:
        expected = dt.datetime.now(UTC) + (until - now)
        assert abs(value - expected) < dt.timedelta(seconds=5), (value, expected)


def elapse(store: Store, by: dt.timedelta) -> None:
    """Let ``by`` pass for the leases: on SQLite the caller passes a later ``now``; on PostgreSQL,
    which compares leases with its own clock, running leases are moved back by ``by`` instead."""
    if store.dialect != "sqlite":
        with store.engine.begin() as conn:
            conn.execute(
                sa.update(tasks_t)
                .where(tasks_t.c.state == "running")
                .values(lease_expires_at=tasks_t.c.lease_expires_at - sa.literal(by, sa.Interval()))
            )


def together(n: int, fn: Callable[[int], R]) -> list[R]:
    """Run fn(0..n-1) on n threads released at the same moment; re-raise their errors."""
    barrier = threading.Barrier(n)

    def run(i: int) -> R:
        barrier.wait(timeout=30)
        return fn(i)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(run, range(n)))


# ----------------------------------------------------------------------------- tasks
def test_upsert_is_idempotent_and_refreshes_description(store: Store) -> None:
    first, created = store.upsert_task(new(1, labels=("bug",)))
    assert created and first.state is TaskState.QUEUED and first.labels == ["bug"]
    same, created_again = store.upsert_task(new(1, labels=("bug",)))
    assert not created_again and same.id == first.id and same.updated_at == first.updated_at

    claimed = store.claim_task("c1", T0 + LEASE, T0)
    assert claimed is not None
    changed = NewTask(
        "github", "1", "new title", body="b", labels=("docs", "x"), priority="critical", repo="o/r", url="u"
    )
    task, created = store.upsert_task(changed)
    assert not created and task.id == first.id
    assert (task.title, task.body, task.labels, task.priority, task.repo, task.url) == (
        "new title",
        "b",
        ["docs", "x"],
        "critical",
        "o/r",
        "u",
    )
    assert task.state is TaskState.RUNNING and task.owner == "c1"  # state untouched
    assert task.updated_at > first.updated_at
    assert [t.id for t in store.list_tasks()] == [first.id]


def test_upsert_same_key_from_8_threads_creates_one_task(store: Store) -> None:
    results = together(8, lambda i: store.upsert_task(new("same")))
    assert sum(created for _, created in results) == 1
    assert len({task.id for task, _ in results}) == 1
    assert len(store.list_tasks()) == 1


def test_upsert_rejects_unknown_priority(store: Store) -> None:
    with pytest.raises(ValueError, match="unknown priority"):
        store.upsert_task(new(1, priority="urgent"))
    assert store.list_tasks() == []


def test_get_find_and_list(store: Store) -> None:
    a, b, c = add(store, "a"), add(store, "b"), add(store, "c")
    assert store.get_task(b.id) == b
    assert store.get_task(9999) is None
    assert store.find_task("github", "c") == c
    assert store.find_task("gitlab", "c") is None
    assert [t.id for t in store.list_tasks()] == [c.id, b.id, a.id]
    assert [t.id for t in store.list_tasks(limit=2)] == [c.id, b.id]
    store.claim_task("o", T0 + LEASE, T0)  # takes a (oldest, same priority)
    assert [t.id for t in store.list_tasks(TaskState.RUNNING)] == [a.id]
    assert [t.id for t in store.list_tasks(TaskState.QUEUED)] == [c.id, b.id]


# ----------------------------------------------------------------------------- claiming
def test_claim_takes_highest_priority_then_oldest(store: Store) -> None:
    low = add(store, 1, priority="low")
    n1 = add(store, 2, priority="normal")
    crit = add(store, 3, priority="critical")
    n2 = add(store, 4, priority="normal")
    high = add(store, 5, priority="high")
    order = []
    while (task := store.claim_task("o", T0 + LEASE, T0)) is not None:
        order.append(task.id)
        assert task.state is TaskState.RUNNING and task.owner == "o"
        assert task.attempt_count == 1
        assert_lease(store, task.lease_expires_at, T0, T0 + LEASE)
    assert order == [crit.id, high.id, n1.id, n2.id, low.id]


def test_claim_respects_not_before_and_exclude_ids(store: Store) -> None:
    waiting = add(store, "w", priority="critical")
    plain = add(store, "p")
    task = store.claim_task("o", T0 + LEASE, T0)
    assert task is not None and task.id == waiting.id
    assert store.release_task(waiting.id, "o", TaskState.RETRY_WAIT, T0 + dt.timedelta(minutes=5), "cooling")

    assert store.claim_task("o", T0 + LEASE, T0, exclude_ids={plain.id}) is None
    got = store.claim_task("o", T0 + LEASE, T0)
    assert got is not None and got.id == plain.id

    assert store.claim_task("o", T0 + LEASE, T0 + dt.timedelta(minutes=4, seconds=59)) is None
    due = store.claim_task("o2", T0 + LEASE, T0 + dt.timedelta(minutes=5))
    assert due is not None and due.id == waiting.id
    assert due.wait_reason is None and due.owner == "o2"


def test_concurrent_claims_take_each_task_exactly_once(store: Store, store_url: str) -> None:
    ids = {add(store, n).id for n in range(200)}
    worker = subprocess.Popen(
        [sys.executable, "-m", "tests.queue.store.claim_worker", store_url, "proc"],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert worker.stdin is not None and worker.stdout is not None
    assert worker.stdout.readline().strip() == "ready"

    def claim_all(i: int) -> list[int]:
        if i == 0:
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        got = []
        while (task := store.claim_task(f"t{i}", T0 + LEASE, T0)) is not None:
            got.append(task.id)
        return got

    by_thread = together(8, claim_all)
    out, _ = worker.communicate(timeout=60)
    assert worker.returncode == 0
    by_proc = json.loads(out.strip().splitlines()[-1])
    claimed = [tid for got in by_thread for tid in got] + by_proc
    dupes = [tid for tid, n in Counter(claimed).items() if n > 1]
    assert dupes == []
    assert set(claimed) == ids
    assert all(t.attempt_count == 1 and t.state is TaskState.RUNNING for t in store.list_tasks(limit=500))


def test_release_gives_back_a_claim_without_attempt(store: Store) -> None:
    task = add(store, 1)
    claimed = store.claim_task("o", T0 + LEASE, T0)
    assert claimed is not None and claimed.attempt_count == 1
    assert not store.release_task(task.id, "someone-else", TaskState.QUEUED, None, "x")
    assert store.release_task(task.id, "o", TaskState.RETRY_WAIT, T0 + LEASE, "no usable target")
    back = store.get_task(task.id)
    assert back is not None
    assert (back.state, back.owner, back.lease_expires_at, back.attempt_count) == (
        TaskState.RETRY_WAIT,
        None,
        None,
        0,
    )
    assert back.not_before == T0 + LEASE and back.wait_reason == "no usable target"
    assert not store.release_task(task.id, "o", TaskState.QUEUED, None, None)  # no longer ours

    _, _attempt = claimed_with_attempt(store, "o", now=T0 + LEASE, fresh=False)
    assert not store.release_task(task.id, "o", TaskState.QUEUED, None, None)  # an attempt runs
    assert store.attempts_for(task.id)[0].state == "running"


def test_a_task_released_as_failed_keeps_the_reason_as_its_error(store: Store) -> None:
    task = add(store, 1)
    assert store.claim_task("o", T0 + LEASE, T0) is not None
    assert store.release_task(task.id, "o", TaskState.FAILED, None, "task budget spent")
    failed = store.get_task(task.id)
    assert failed is not None and (failed.state, failed.last_error, failed.wait_reason) == (
        TaskState.FAILED,
        "task budget spent",
        None,
    )


def test_a_fresh_round_records_when_it_began(store: Store) -> None:
    task = add(store, 1)
    assert store.get_task(task.id).round_started_at is None  # type: ignore[union-attr]
    store.request_cancel(task.id, T0)
    assert store.requeue_task(task.id, T0 + LEASE)  # the same round
    assert store.get_task(task.id).round_started_at is None  # type: ignore[union-attr]
    store.request_cancel(task.id, T0)
    assert store.requeue_task(task.id, T0 + 2 * LEASE, reset_retries=True)
    assert store.get_task(task.id).round_started_at == T0 + 2 * LEASE  # type: ignore[union-attr]


# ----------------------------------------------------------------------------- attempts
def test_start_attempt_numbers_and_points_the_task_at_it(store: Store) -> None:
    task, first = claimed_with_attempt(store, "o")
    assert (first.number, first.state, first.owner, first.host, first.started_at) == (
        1,
        "running",
        "o",
        "host-a",
        T0,
    )
    current = store.get_task(task.id)
    assert current is not None and current.current_attempt_id == first.id
    assert store.start_attempt(task.id, "o", START, T0) is None  # one already runs
    assert store.start_attempt(task.id, "intruder", START, T0) is None
    assert len(store.attempts_for(task.id)) == 1

    assert store.finish_attempt(first.id, "o", AttemptEnd("failed"), Transition(TaskState.QUEUED), T0)
    _, second = claimed_with_attempt(store, "o2", start=replace(START, failover_from="alpha:a-small"), fresh=False)
    assert second.number == 2 and second.failover_from == "alpha:a-small"
    assert [a.number for a in store.attempts_for(task.id)] == [1, 2]


def test_partial_unique_index_rejects_a_second_running_attempt_even_raw(store: Store) -> None:
    task, _attempt = claimed_with_attempt(store, "o")
    row = {
        "task_id": task.id,
        "number": 2,
        "provider": "p",
        "model": "m",
        "routing": {},
        "config_fingerprint": "f",
        "owner": "rogue",
        "host": "h",
        "started_at": T0,
        "state": "running",
        "input_tokens": 0,
        "output_tokens": 0,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
    }
    with pytest.raises(
        sa.exc.IntegrityError,
        match=r"ux_attempts_one_running_per_task|UNIQUE constraint failed: attempts.task_id",
    ):
        with store.engine.begin() as conn:
            conn.execute(sa.insert(attempts_t).values(**row))
    # A finished attempt of the same task is fine: the index covers running ones only.
    with store.engine.begin() as conn:
        conn.execute(sa.insert(attempts_t).values(**{**row, "state": "finished", "ended_at": T0}))
    assert [a.state for a in store.attempts_for(task.id)] == ["running", "finished"]


def test_check_constraint_keeps_running_tasks_owned(store: Store) -> None:
    task = add(store, 1)
    with pytest.raises(sa.exc.IntegrityError):
        with store.engine.begin() as conn:
            conn.execute(sa.update(tasks_t).where(tasks_t.c.id == task.id).values(state="running"))
    assert store.get_task(task.id) == task


def test_set_attempt_process_is_fenced(store: Store) -> None:
    _, attempt = claimed_with_attempt(store, "o")
    assert not store.set_attempt_process(attempt.id, "other", 1, 1, 1.0)
    assert store.set_attempt_process(attempt.id, "o", 4242, 4240, 1234.5)
    (live,) = store.running_attempts()
    assert (live.pid, live.pgid, live.create_time) == (4242, 4240, 1234.5)


def test_record_usage_is_fenced_and_the_final_count_wins(store: Store) -> None:
    task, attempt = claimed_with_attempt(store, "o")
    store.record_usage("other", {attempt.id: Usage(input_tokens=99)})
    store.record_usage("o", {attempt.id: Usage(input_tokens=7, output_tokens=2, cache_read_tokens=5)})
    (live,) = store.running_attempts()
    assert (live.input_tokens, live.output_tokens, live.cache_read_tokens, live.cache_write_tokens) == (7, 2, 5, 0)
    assert store.usage("provider")[0]["input_tokens"] == 7  # reports include work so far
    assert store.attempt_aggregates()["by_target"][0]["input"] == 0  # counters only finished work
    store.finish_attempt(attempt.id, "o", AttemptEnd("success", input_tokens=6), Transition(TaskState.SUCCEEDED), T0)
    store.record_usage("o", {attempt.id: Usage(input_tokens=1000)})  # too late: the attempt has ended
    (done,) = store.attempts_for(task.id)
    assert (done.input_tokens, done.output_tokens) == (6, 0)


def test_renew_leases_extends_ours_and_reports_lost(store: Store) -> None:
    a, att_a = claimed_with_attempt(store, "o")
    b, _att_b = claimed_with_attempt(store, "o")
    c = add(store, "claimed-only")
    assert store.claim_task("o", T0 + LEASE, T0) is not None
    later = T0 + 3 * LEASE
    lost = store.renew_leases("o", [(a.id, att_a.id), (b.id, att_a.id), (c.id, None), (9999, 1)], later, T0)
    assert lost == {b.id, 9999}  # b: wrong attempt id; 9999: no such task
    assert_lease(store, store.get_task(a.id).lease_expires_at, T0, later)  # type: ignore[union-attr]
    assert_lease(store, store.get_task(b.id).lease_expires_at, T0, T0 + LEASE)  # type: ignore[union-attr]
    assert_lease(store, store.get_task(c.id).lease_expires_at, T0, later)  # type: ignore[union-attr]
    assert store.renew_leases("someone", [(a.id, att_a.id)], later + LEASE) == {a.id}
    assert store.renew_leases("o", [], later) == set()


def test_fencing_after_reap_and_reclaim_writes_nothing(store: Store) -> None:
    task, old = claimed_with_attempt(store, "old")
    elapse(store, 2 * LEASE)
    reaped = store.reap_expired(T0 + 2 * LEASE)
    assert [t.id for t, _ in reaped] == [task.id]
    now = T0 + 2 * LEASE
    _, new_attempt = claimed_with_attempt(store, "new", now=now, fresh=False)
    before_task, before_attempts = store.get_task(task.id), store.attempts_for(task.id)

    assert store.renew_leases("old", [(task.id, old.id)], now + 10 * LEASE) == {task.id}
    assert not store.set_attempt_process(old.id, "old", 1, 1, 1.0)
    assert not store.finish_attempt(
        old.id, "old", AttemptEnd("success", cost_usd=9.0), Transition(TaskState.SUCCEEDED), now
    )
    assert not store.release_task(task.id, "old", TaskState.QUEUED, None, None)
    # The old owner may not finish the new attempt either, even knowing its id.
    assert not store.finish_attempt(new_attempt.id, "old", AttemptEnd("success"), Transition(TaskState.SUCCEEDED), now)
    assert store.get_task(task.id) == before_task
    assert store.attempts_for(task.id) == before_attempts
    assert before_task is not None and before_task.owner == "new"


def test_finish_attempt_applies_the_transition(store: Store) -> None:
    task, attempt = claimed_with_attempt(store, "o")
    end = AttemptEnd(
        "failed",
        error_kind="rate_limited",
        error_message="429",
        input_tokens=10,
        output_tokens=20,
        cache_read_tokens=3,
        cache_write_tokens=4,
        cost_usd=0.5,
        cost_source="reported",
        log_path="/l",
        session_id="s",
        result_text="r",
    )
    later = T0 + dt.timedelta(seconds=30)
    transition = Transition(
        TaskState.RETRY_WAIT,
        not_before=later + LEASE,
        retry_count=1,
        wait_reason="backoff",
        last_error="429",
        last_error_kind="rate_limited",
        excluded_targets=["alpha:a-small"],
    )
    assert store.finish_attempt(attempt.id, "o", end, transition, later)
    t = store.get_task(task.id)
    assert t is not None
    assert (t.state, t.not_before, t.retry_count, t.wait_reason, t.last_error, t.last_error_kind) == (
        TaskState.RETRY_WAIT,
        later + LEASE,
        1,
        "backoff",
        "429",
        "rate_limited",
    )
    assert t.excluded_targets == ["alpha:a-small"]
    assert (t.owner, t.lease_expires_at, t.current_attempt_id) == (None, None, None)
    (a,) = store.attempts_for(task.id)
    assert (a.state, a.ended_at, a.outcome, a.error_kind, a.error_message) == (
        "finished",
        later,
        "failed",
        "rate_limited",
        "429",
    )
    assert (a.input_tokens, a.output_tokens, a.cache_read_tokens, a.cache_write_tokens) == (10, 20, 3, 4)
    assert (a.cost_usd, a.cost_source, a.log_path, a.session_id, a.result_text) == (
        0.5,
        "reported",
        "/l",
        "s",
        "r",
    )
    # Finishing twice is fenced out.
    assert not store.finish_attempt(attempt.id, "o", end, Transition(TaskState.SUCCEEDED), later)

    # None leaves retry_count and excluded_targets as they were.
    again = store.claim_task("o", later + 3 * LEASE, later + 2 * LEASE)
    assert again is not None and again.id == task.id
    second = store.start_attempt(task.id, "o", START, later + 2 * LEASE)
    assert second is not None
    assert store.finish_attempt(second.id, "o", AttemptEnd("success"), Transition(TaskState.SUCCEEDED), later)
    done = store.get_task(task.id)
    assert done is not None and done.state is TaskState.SUCCEEDED
    assert done.retry_count == 1 and done.excluded_targets == ["alpha:a-small"] and done.attempt_count == 2
    with pytest.raises(ValueError):
        store.finish_attempt(second.id, "o", AttemptEnd("x"), Transition(TaskState.RUNNING), later)


# ----------------------------------------------------------------------------- recovery
def test_reap_expired_requeues_and_crashes_the_attempt(store: Store) -> None:
    task, attempt = claimed_with_attempt(store, "dead")
    elapse(store, LEASE + dt.timedelta(seconds=1))
    fresh, _ = claimed_with_attempt(store, "alive", now=T0 + LEASE)
    if store.dialect == "sqlite":  # (PostgreSQL's own clock cannot be held at an instant)
        assert store.reap_expired(T0 + LEASE) == []  # expiry is strict: at the instant it still holds
    reaped = store.reap_expired(T0 + LEASE + dt.timedelta(seconds=1))
    assert len(reaped) == 1
    t, a = reaped[0]
    assert t.id == task.id and a is not None and a.id == attempt.id
    assert (t.state, t.owner, t.lease_expires_at, t.current_attempt_id, t.not_before) == (
        TaskState.QUEUED,
        None,
        None,
        None,
        None,
    )
    assert (t.retry_count, t.attempt_count, t.last_error_kind) == (0, 1, "crashed")
    assert (a.state, a.outcome, a.error_kind) == ("finished", "crashed", "crashed")
    assert a.error_message == "lease lost: coordinator dead stopped heartbeating"
    assert store.get_task(fresh.id).state is TaskState.RUNNING  # type: ignore[union-attr]
    assert store.reap_expired(T0 + LEASE + dt.timedelta(seconds=1)) == []


def test_reap_of_a_claim_without_attempt_counts_it(store: Store) -> None:
    """What killed the claim while preparing may kill the next one: it counts toward the limit."""
    task = add(store, 1)
    assert store.claim_task("dead", T0 + LEASE, T0) is not None
    elapse(store, 2 * LEASE)
    ((t, a),) = store.reap_expired(T0 + 2 * LEASE)
    assert a is None and t.id == task.id and t.state is TaskState.QUEUED and t.attempt_count == 1


def test_two_concurrent_reapers_reap_each_task_once(store: Store) -> None:
    ids = []
    for n in range(30):
        add(store, n)
        task, _ = claimed_with_attempt(store, f"dead{n % 3}", fresh=False)
        ids.append(task.id)
    elapse(store, 2 * LEASE)
    results = together(2, lambda i: store.reap_expired(T0 + 2 * LEASE))
    reaped = [t.id for got in results for t, _ in got]
    assert sorted(reaped) == sorted(ids)
    for tid in ids:
        (a,) = store.attempts_for(tid)
        assert a.outcome == "crashed"
        t = store.get_task(tid)
        assert t is not None and t.state is TaskState.QUEUED and t.attempt_count == 1


def test_abandon_attempt_for_a_restarted_coordinator(store: Store) -> None:
    task, attempt = claimed_with_attempt(store, "coord/1")
    assert store.running_attempts(host="host-a") == store.running_attempts(owner="coord/1")
    assert store.running_attempts(host="elsewhere") == []
    assert not store.abandon_attempt(attempt.id, "coord/2", T0, "restarted")
    assert store.abandon_attempt(attempt.id, "coord/1", T0, "restarted: orphan killed")
    assert not store.abandon_attempt(attempt.id, "coord/1", T0, "again")
    t = store.get_task(task.id)
    assert t is not None and t.state is TaskState.QUEUED and t.owner is None
    (a,) = store.attempts_for(task.id)
    assert (a.outcome, a.error_message) == ("crashed", "restarted: orphan killed")
    assert store.running_attempts() == []


# ----------------------------------------------------------------------------- operator actions
def test_request_cancel_in_each_state(store: Store) -> None:
    queued = add(store, "q")
    assert store.request_cancel(queued.id, T0) is TaskState.CANCELLED
    assert store.get_task(queued.id).state is TaskState.CANCELLED  # type: ignore[union-attr]
    assert store.request_cancel(queued.id, T0) is TaskState.CANCELLED  # terminal: unchanged

    waiting = add(store, "w")
    assert store.claim_task("o", T0 + LEASE, T0) is not None
    assert store.release_task(waiting.id, "o", TaskState.RETRY_WAIT, T0 + LEASE, "wait")
    assert store.request_cancel(waiting.id, T0) is TaskState.CANCELLED
    w = store.get_task(waiting.id)
    assert w is not None and w.state is TaskState.CANCELLED and w.not_before is None

    running = add(store, "r")
    _, attempt = claimed_with_attempt(store, "o", fresh=False)
    assert store.cancel_requested("o") == []
    assert store.request_cancel(running.id, T0) is TaskState.RUNNING
    r = store.get_task(running.id)
    assert r is not None and r.state is TaskState.RUNNING and r.cancel_requested
    assert store.cancel_requested("o") == [running.id]
    assert store.cancel_requested("other") == []
    assert store.finish_attempt(attempt.id, "o", AttemptEnd("cancelled"), Transition(TaskState.CANCELLED), T0)
    assert store.cancel_requested("o") == []
    assert store.request_cancel(running.id, T0) is TaskState.CANCELLED

    assert store.request_cancel(9999, T0) is None


def test_requeue_task(store: Store) -> None:
    task, attempt = claimed_with_attempt(store, "o")
    assert not store.requeue_task(task.id, T0)  # running
    assert not store.requeue_task(9999, T0)
    assert store.finish_attempt(
        attempt.id,
        "o",
        AttemptEnd("failed"),
        Transition(TaskState.FAILED, retry_count=3, excluded_targets=["a:b"], last_error="boom"),
        T0,
    )
    assert store.requeue_task(task.id, T0)
    t = store.get_task(task.id)
    assert t is not None
    assert (t.state, t.excluded_targets, t.not_before, t.cancel_requested, t.retry_count) == (
        TaskState.QUEUED,
        [],
        None,
        False,
        3,
    )
    store.request_cancel(task.id, T0)
    assert store.requeue_task(task.id, T0, reset_retries=True)
    t = store.get_task(task.id)
    assert t is not None and t.state is TaskState.QUEUED and t.retry_count == 0 and t.attempt_count == 0


# ----------------------------------------------------------------------------- provider health
def test_provider_state_round_trip(store: Store) -> None:
    assert store.provider_states() == {}
    state = ProviderState(
        "alpha",
        circuit=CircuitState.OPEN,
        cooldown_until=T0 + LEASE,
        cooldown_reason="429",
        trips=2,
        consecutive_failures=5,
        probe_attempt_id=7,
        disabled_reason=None,
        updated_at=T0,
        recent=[True, False, False],
    )
    store.save_provider_state(state)
    assert store.provider_states() == {"alpha": state}
    store.save_provider_state(replace(state, circuit=CircuitState.CLOSED, recent=[True]))
    got = store.provider_states()["alpha"]
    assert got.circuit is CircuitState.CLOSED and got.recent == [True] and got.trips == 2


def test_update_provider_state_from_8_threads_loses_no_update(store: Store) -> None:
    def bump(s: ProviderState) -> ProviderState:
        return replace(s, consecutive_failures=s.consecutive_failures + 1, recent=[*s.recent, False][-5:])

    def worker(_: int) -> None:
        for _ in range(25):
            store.update_provider_state("beta", bump)

    together(8, worker)
    got = store.provider_states()["beta"]
    assert got.consecutive_failures == 200 and got.circuit is CircuitState.CLOSED
    assert got.recent == [False] * 5
    assert got.updated_at is not None and got.updated_at.tzinfo is UTC


# ----------------------------------------------------------------------------- load, spend, usage
def _run_attempt(
    store: Store,
    n: int,
    provider: str,
    model: str,
    when: dt.datetime,
    cost: float | None,
    labels: tuple[str, ...],
) -> Task:
    add(store, n, labels=labels)
    task, attempt = claimed_with_attempt(
        store, "o", now=when, start=replace(START, provider=provider, model=model), fresh=False
    )
    end = AttemptEnd("success", input_tokens=100 * n, output_tokens=10 * n, cache_read_tokens=n, cost_usd=cost)
    assert store.finish_attempt(attempt.id, "o", end, Transition(TaskState.SUCCEEDED), when)
    return task


def test_load_spend_and_usage_aggregates(store: Store) -> None:
    day1 = dt.datetime(2030, 1, 1, 23, 30, tzinfo=UTC)
    day2 = dt.datetime(2030, 1, 2, 0, 30, tzinfo=dt.timezone(dt.timedelta(hours=5)))  # 2030-01-01 19:30Z
    day3 = dt.datetime(2030, 1, 2, 10, 0, tzinfo=UTC)
    t1 = _run_attempt(store, 1, "alpha", "a-small", day1, 1.0, ("bug", "docs"))
    t2 = _run_attempt(store, 2, "alpha", "a-big", day2, None, ("bug",))
    t3 = _run_attempt(store, 3, "beta", "b-mid", day3, 2.5, ())
    add(store, 4)
    live_task, _ = claimed_with_attempt(store, "o", now=day3, start=replace(START, provider="beta"), fresh=False)

    assert store.running_count_by_provider() == {"beta": 1}
    assert store.attempts_started_since(day3) == {"beta": 2}
    assert store.attempts_started_since(day2) == {"alpha": 2, "beta": 2}
    assert store.spend_since(day1) == {"alpha": 1.0, "beta": 2.5}
    assert store.spend_since(day3) == {"beta": 2.5}

    by_provider = {r["key"]: r for r in store.usage("provider")}
    assert by_provider["alpha"] == {
        "key": "alpha",
        "attempts": 2,
        "input_tokens": 300,
        "output_tokens": 30,
        "cache_read_tokens": 3,
        "cache_write_tokens": 0,
        "cost_usd": 1.0,
    }
    assert by_provider["beta"]["attempts"] == 2 and by_provider["beta"]["cost_usd"] == 2.5
    assert [r["key"] for r in store.usage("model")] == ["a-big", "a-small", "b-mid"]
    assert [(r["key"], r["attempts"]) for r in store.usage("day")] == [("2030-01-01", 2), ("2030-01-02", 2)]
    assert [(r["key"], r["attempts"]) for r in store.usage("day", since=day3)] == [("2030-01-02", 2)]
    by_task = {r["key"]: r["input_tokens"] for r in store.usage("task")}
    assert by_task == {str(t1.id): 100, str(t2.id): 200, str(t3.id): 300, str(live_task.id): 0}
    by_label = {r["key"]: (r["attempts"], r["input_tokens"], r["cost_usd"]) for r in store.usage("label")}
    assert by_label == {"bug": (2, 300, 1.0), "docs": (1, 100, 1.0), "(unlabelled)": (2, 300, 2.5)}
    with pytest.raises(ValueError):
        store.usage("colour")


def test_counts_by_state_priority(store: Store) -> None:
    add(store, 1, priority="high")
    add(store, 2, priority="high")
    add(store, 3, priority="low")
    assert store.claim_task("o", T0 + LEASE, T0) is not None  # a high one
    assert store.counts_by_state_priority() == {"queued": {"high": 1, "low": 1}, "running": {"high": 1}}


# ----------------------------------------------------------------------------- events
def test_events_newest_first_and_per_task(store: Store) -> None:
    task, attempt = claimed_with_attempt(store, "o")
    store.add_event("task.claimed", "one", task_id=task.id, now=T0)
    store.add_event("provider.circuit", "two", provider="alpha", data={"trips": 2}, now=T0 + LEASE)
    store.add_event("attempt.started", "three", task_id=task.id, attempt_id=attempt.id)
    every = store.events()
    assert [e["message"] for e in every] == ["three", "two", "one"]
    assert every[1]["data"] == {"trips": 2} and every[1]["provider"] == "alpha" and every[1]["at"] == T0 + LEASE
    assert every[0]["attempt_id"] == attempt.id and every[0]["at"].tzinfo is UTC
    assert [e["message"] for e in store.events(task_id=task.id)] == ["three", "one"]
    assert [e["message"] for e in store.events(limit=1)] == ["three"]


# ----------------------------------------------------------------------------- coordinators, leader
def test_coordinator_registry(store: Store) -> None:
    store.register_coordinator("c/1", "c", "host-a", 100, T0)
    store.register_coordinator("d/1", "d", "host-b", 200, T0 + LEASE)
    store.heartbeat_coordinator("c/1", T0 + 2 * LEASE)
    rows = store.coordinators()
    assert [(r["id"], r["name"], r["host"], r["pid"]) for r in rows] == [
        ("c/1", "c", "host-a", 100),
        ("d/1", "d", "host-b", 200),
    ]
    assert rows[0]["started_at"] == T0 and rows[0]["heartbeat_at"] == T0 + 2 * LEASE
    store.unregister_coordinator("c/1")
    assert [r["id"] for r in store.coordinators()] == ["d/1"]


def test_leader_lease(store: Store) -> None:
    assert store.acquire_leader("github-poll", "a", T0 + LEASE, T0)
    assert not store.acquire_leader("github-poll", "b", T0 + 2 * LEASE, T0 + dt.timedelta(seconds=30))
    assert store.acquire_leader("other-duty", "b", T0 + LEASE, T0)  # leases are per name
    assert store.acquire_leader("github-poll", "a", T0 + 2 * LEASE, T0 + dt.timedelta(seconds=30))  # renew
    assert not store.acquire_leader("github-poll", "b", T0 + 3 * LEASE, T0 + LEASE)  # renewed: still a's
    assert store.acquire_leader("github-poll", "b", T0 + 3 * LEASE, T0 + 2 * LEASE)  # expired: b takes it
    assert not store.acquire_leader("github-poll", "a", T0 + 3 * LEASE, T0 + 2 * LEASE)
    store.release_leader("github-poll", "a")  # not a's any more: no effect
    assert not store.acquire_leader("github-poll", "a", T0 + 3 * LEASE, T0 + 2 * LEASE)
    store.release_leader("github-poll", "b")
    assert store.acquire_leader("github-poll", "a", T0 + 3 * LEASE, T0 + 2 * LEASE)


# ----------------------------------------------------------------------------- time zones
def test_datetimes_are_aware_utc_in_and_out(store: Store) -> None:
    plus5 = dt.timezone(dt.timedelta(hours=5))
    minus5 = dt.timezone(dt.timedelta(hours=-5))
    task = add(store, 1)
    lease = dt.datetime(2030, 6, 1, 17, 0, 0, 123456, tzinfo=plus5)  # 12:00:00.123456Z
    claimed = store.claim_task("o", lease, dt.datetime(2030, 6, 1, 7, 0, tzinfo=minus5))
    assert claimed is not None and claimed.lease_expires_at is not None
    assert claimed.lease_expires_at.tzinfo is UTC
    if store.dialect == "sqlite":  # (PostgreSQL counts leases from its own clock)
        assert claimed.lease_expires_at == lease and claimed.lease_expires_at.hour == 12
    assert claimed.created_at.tzinfo is UTC and claimed.updated_at.tzinfo is UTC

    # Comparisons happen on the instant, not on the written offset.
    assert store.release_task(task.id, "o", TaskState.RETRY_WAIT, lease, "wait")
    just_before = dt.datetime(2030, 6, 1, 6, 59, 59, tzinfo=minus5)  # 11:59:59Z
    assert store.claim_task("o", lease, just_before) is None
    at = dt.datetime(2030, 6, 1, 7, 0, 0, 123456, tzinfo=minus5)
    assert store.claim_task("o", lease + LEASE, at) is not None
    if store.dialect == "sqlite":
        assert store.reap_expired(lease + LEASE) == []
        assert len(store.reap_expired(lease + LEASE + dt.timedelta(microseconds=1))) == 1

    with pytest.raises(sa.exc.StatementError, match="naive datetime"):
        store.claim_task("o", dt.datetime(2030, 1, 1), T0)


def test_an_attempt_keeps_its_exit_code_stderr_and_per_model_usage_and_usage_by_model_sums_them(store: Store) -> None:
    _, attempt = claimed_with_attempt(store, "o")
    breakdown = {
        "claude-sonnet-4-5": {
            "input_tokens": 101,
            "output_tokens": 900,
            "cache_read_tokens": 50,
            "cache_write_tokens": 7,
            "cost_usd": 0.02,
        },
        "claude-haiku-4-5": {
            "input_tokens": 7000,
            "output_tokens": 60,
            "cache_read_tokens": 0,
            "cache_write_tokens": 0,
            "cost_usd": 0.001,
        },
    }
    end = AttemptEnd(
        outcome="success",
        input_tokens=7101,
        output_tokens=960,
        cache_read_tokens=50,
        cache_write_tokens=7,
        cost_usd=0.021,
        exit_code=0,
        stderr_tail="warming up\n",
        model_usage=breakdown,
    )
    assert store.finish_attempt(attempt.id, "o", end, Transition(TaskState.SUCCEEDED), T0)
    (stored,) = store.attempts_for(attempt.task_id)
    assert (stored.exit_code, stored.stderr_tail, stored.model_usage) == (0, "warming up\n", breakdown)
    _, other = claimed_with_attempt(store, "o", start=replace(START, model="gpt-5"))
    assert store.finish_attempt(
        other.id, "o", AttemptEnd(outcome="success", input_tokens=5, cost_usd=0.5), Transition(TaskState.SUCCEEDED), T0
    )
    rows = {r["key"]: r for r in store.usage("model")}
    assert set(rows) == {"claude-sonnet-4-5", "claude-haiku-4-5", "gpt-5"}  # not START's model: the breakdown decides
    assert rows["claude-haiku-4-5"]["input_tokens"] == 7000 and rows["claude-haiku-4-5"]["cost_usd"] == 0.001
    assert rows["gpt-5"]["input_tokens"] == 5 and rows["gpt-5"]["cost_usd"] == 0.5
