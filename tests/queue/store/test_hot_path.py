"""The coordinator's hot path in the store, on SQLite and PostgreSQL: claim-and-start in one
transaction, the end with its health and events in one, process identities with the heartbeat,
the idle probe, and the wake-ups that announce claimable work."""

from __future__ import annotations

import datetime as dt
import os
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa

from adw_modules.queue.store import Store, wakeups
from adw_modules.queue.tasks import (
    AttemptEnd,
    AttemptStart,
    CircuitState,
    HealthChange,
    LeaveQueued,
    NewEvent,
    NewTask,
    ProviderState,
    StartNow,
    Task,
    TaskState,
    Transition,
)

T0 = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)
LEASE = T0 + dt.timedelta(seconds=60)
START = AttemptStart(
    provider="alpha", model="m", rule="default", routing={"chosen": "alpha:m"}, config_fingerprint="f", host="h"
)
END = AttemptEnd(
    outcome="success",
    error_kind=None,
    error_message=None,
    input_tokens=10,
    output_tokens=5,
    cache_read_tokens=0,
    cache_write_tokens=0,
    cost_usd=0.01,
    cost_source="reported",
    log_path=None,
    session_id=None,
    result_text="done",
    exit_code=0,
    stderr_tail=None,
)


def add(store: Store, n: int, priority: str = "normal") -> Task:
    task, created = store.upsert_task(NewTask("local", str(n), f"task {n}", priority=priority))
    assert created
    return task


@contextmanager
def counting(store: Store) -> Iterator[Counter[str]]:
    """Statements (by first word) and transactions (``tx``) the store runs inside the block."""
    seen: Counter[str] = Counter()

    def statement(conn: Any, cursor: Any, text: str, *args: Any) -> None:
        seen[text.split()[0].upper()] += 1

    def begin(conn: Any) -> None:
        seen["tx"] += 1

    sa.event.listen(store.engine, "before_cursor_execute", statement)
    sa.event.listen(store.engine, "begin", begin)
    try:
        yield seen
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", statement)
        sa.event.remove(store.engine, "begin", begin)


def real_statements(seen: Counter[str]) -> int:
    return sum(n for kind, n in seen.items() if kind not in ("tx", "BEGIN"))


def start_now(task: Task, prior: int) -> StartNow:
    return StartNow(START, f"attempt {prior + 1} on alpha:m")


# ----------------------------------------------------------------------------- claim and start
def test_claim_and_start_claims_starts_and_announces_in_one_transaction(store: Store) -> None:
    add(store, 1)
    seen_by_decide: list[tuple[Task, int]] = []

    def decide(task: Task, prior: int) -> StartNow:
        seen_by_decide.append((task, prior))
        return start_now(task, prior)

    with counting(store) as seen:
        claimed = store.claim_and_start("me", LEASE, T0, decide)
    assert claimed is not None and claimed.attempt is not None
    task, attempt = claimed.task, claimed.attempt
    assert (task.state, task.owner, task.attempt_count, task.current_attempt_id) == (
        TaskState.RUNNING,
        "me",
        1,
        attempt.id,
    )
    assert (attempt.number, attempt.state, attempt.provider, attempt.owner) == (1, "running", "alpha", "me")
    # decide saw the task as the claim makes it, with its attempts so far
    ((view, prior),) = seen_by_decide
    assert (view.state, view.owner, view.attempt_count, prior) == (TaskState.RUNNING, "me", 1, 0)
    assert seen["tx"] == 1 and real_statements(seen) == 4  # pick, claim, attempt, event
    (event,) = store.events(task_id=task.id)
    assert (event["kind"], event["message"], event["attempt_id"]) == (
        "attempt.started",
        "attempt 1 on alpha:m",
        attempt.id,
    )


def test_claim_and_start_takes_tasks_in_claim_order_and_skips_excluded(store: Store) -> None:
    low, high = add(store, 1, "low"), add(store, 2, "high")
    first = store.claim_and_start("me", LEASE, T0, lambda t, p: None)
    assert first is not None and first.task.id == high.id and first.attempt is None
    assert store.claim_and_start("me", LEASE, T0, lambda t, p: None, exclude_ids=[low.id]) is None
    second = store.claim_and_start("me", LEASE, T0, lambda t, p: None, task_id=low.id)
    assert second is not None and second.task.id == low.id
    assert store.claim_and_start("me", LEASE, T0, lambda t, p: None) is None


def test_a_claim_without_attempt_is_started_later_fenced_and_with_a_fresh_lease(store: Store) -> None:
    task = add(store, 1)
    claimed = store.claim_and_start("me", LEASE, T0, lambda t, p: None)
    assert claimed is not None and claimed.task.current_attempt_id is None
    assert store.start_attempt(task.id, "someone else", START, T0) is None
    later = T0 + dt.timedelta(seconds=30)
    attempt = store.start_attempt(
        task.id, "me", START, later, lease_until=later + dt.timedelta(seconds=60), started_event=lambda n: f"#{n}"
    )
    assert attempt is not None and attempt.number == 1
    got = store.get_task(task.id)
    assert got is not None and got.current_attempt_id == attempt.id
    if store.dialect == "sqlite":  # PostgreSQL counts the lease on its own clock
        assert got.lease_expires_at == later + dt.timedelta(seconds=60)
    assert [e["message"] for e in store.events(task_id=task.id)] == ["#1"]
    # a second start of the same claim is refused: it already has its attempt
    assert store.start_attempt(task.id, "me", START, later) is None


def test_leave_queued_claims_nothing_and_stores_a_new_reason_once(store: Store) -> None:
    task = add(store, 1)
    left = store.claim_and_start("me", LEASE, T0, lambda t, p: LeaveQueued("waiting for alpha: busy"))
    assert left is not None and left.waiting == "waiting for alpha: busy" and left.announced
    got = store.get_task(task.id)
    assert got is not None and (got.state, got.owner, got.attempt_count) == (TaskState.QUEUED, None, 0)
    assert got.wait_reason == "waiting for alpha: busy"
    again = store.claim_and_start("me", LEASE, T0, lambda t, p: LeaveQueued("waiting for alpha: busy"))
    assert again is not None and not again.announced
    assert [e["kind"] for e in store.events(task_id=task.id)] == ["task.waiting"]


def test_a_decide_that_raises_writes_nothing(store: Store) -> None:
    task = add(store, 1)

    def broken(t: Task, p: int) -> StartNow:
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError):
        store.claim_and_start("me", LEASE, T0, broken)
    got = store.get_task(task.id)
    assert got is not None and got.state is TaskState.QUEUED and got.attempt_count == 0
    assert store.attempts_for(task.id) == [] and store.events(task_id=task.id) == []


def test_attempt_ids_reserved_by_claims_match_the_rows_written(store: Store) -> None:
    for n in range(5):
        add(store, n)
    ids = []
    for _ in range(5):
        claimed = store.claim_and_start("me", LEASE, T0, start_now)
        assert claimed is not None and claimed.attempt is not None
        assert claimed.task.current_attempt_id == claimed.attempt.id
        ids.append(claimed.attempt.id)
    assert len(set(ids)) == 5


def test_concurrent_claimers_start_each_task_once(store: Store) -> None:
    for n in range(30):
        add(store, n)
    started: list[int] = []
    lock = threading.Lock()

    def claimer(owner: str) -> None:
        while (claimed := store.claim_and_start(owner, LEASE, T0, start_now)) is not None:
            with lock:
                started.append(claimed.task.id)

    threads = [threading.Thread(target=claimer, args=(f"c{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(started) == sorted(set(started)) and len(started) == 30


# ----------------------------------------------------------------------------- finishing
def _running(store: Store) -> tuple[Task, int]:
    add(store, 1)
    claimed = store.claim_and_start("me", LEASE, T0, start_now)
    assert claimed is not None and claimed.attempt is not None
    return claimed.task, claimed.attempt.id


def test_finish_writes_end_events_health_and_process_in_one_transaction(store: Store) -> None:
    task, attempt_id = _running(store)
    told: list[tuple[ProviderState, ProviderState]] = []

    def recorded(before: ProviderState, after: ProviderState) -> NewEvent | None:
        told.append((before, after))
        return NewEvent("provider.circuit", "alpha: open", provider="alpha")

    change = HealthChange(
        "alpha",
        lambda s: ProviderState("alpha", circuit=CircuitState.OPEN, consecutive_failures=3, recent=[*s.recent, False]),
        recorded,
    )
    with counting(store) as seen:
        assert store.finish_attempt(
            attempt_id,
            "me",
            END,
            Transition(TaskState.SUCCEEDED),
            T0,
            events_after=[NewEvent("attempt.finished", "done", provider="alpha", data={"state": "succeeded"})],
            health=change,
            process=(4242, 4242, 1234.5),
        )
    assert seen["tx"] == 1
    (attempt,) = store.attempts_for(task.id)
    assert (attempt.state, attempt.pid, attempt.create_time) == ("finished", 4242, 1234.5)
    state = store.provider_states()["alpha"]
    assert (state.circuit, state.consecutive_failures, state.recent) == (CircuitState.OPEN, 3, [False])
    ((before, after),) = told
    assert before.circuit is CircuitState.CLOSED and after.circuit is CircuitState.OPEN
    events = {e["kind"]: e for e in store.events()}
    assert events["attempt.finished"]["task_id"] == task.id and events["attempt.finished"]["data"] == {
        "state": "succeeded"
    }
    assert events["provider.circuit"]["provider"] == "alpha"


def test_a_fenced_out_finish_writes_no_health_and_no_events(store: Store) -> None:
    task, attempt_id = _running(store)
    change = HealthChange("alpha", lambda s: ProviderState("alpha", consecutive_failures=9), lambda b, a: None)
    assert not store.finish_attempt(
        attempt_id,
        "not me",
        END,
        Transition(TaskState.SUCCEEDED),
        T0,
        events_after=[NewEvent("attempt.finished", "done")],
        health=change,
    )
    assert "alpha" not in store.provider_states()
    assert [e["kind"] for e in store.events(task_id=task.id)] == ["attempt.started"]


def test_the_clean_success_path_is_seven_statements_in_two_transactions(store: Store) -> None:
    add(store, 1)
    with counting(store) as seen:
        claimed = store.claim_and_start("me", LEASE, T0, start_now)
        assert claimed is not None and claimed.attempt is not None
        assert store.finish_attempt(
            claimed.attempt.id,
            "me",
            END,
            Transition(TaskState.SUCCEEDED),
            T0,
            events_after=[NewEvent("attempt.finished", "done")],
        )
    assert seen["tx"] == 2 and real_statements(seen) == 7


def test_heartbeat_records_process_identities_fenced(store: Store) -> None:
    task, attempt_id = _running(store)
    assert store.renew_leases("me", [(task.id, attempt_id)], LEASE, T0, processes={attempt_id: (77, 70, 9.5)}) == set()
    (attempt,) = store.attempts_for(task.id)
    assert (attempt.pid, attempt.pgid, attempt.create_time) == (77, 70, 9.5)
    store.renew_leases("intruder", [(task.id, attempt_id)], LEASE, T0, processes={attempt_id: (1, 1, 1.0)})
    assert store.attempts_for(task.id)[0].pid == 77


# ----------------------------------------------------------------------------- idle probe
def test_work_due_sees_queued_running_and_due_retries_only(store: Store) -> None:
    assert not store.work_due(T0)
    task = add(store, 1)
    assert store.work_due(T0)
    claimed = store.claim_and_start("me", LEASE, T0, start_now)
    assert claimed is not None and claimed.attempt is not None
    assert store.work_due(T0)
    later = T0 + dt.timedelta(minutes=10)
    store.finish_attempt(claimed.attempt.id, "me", END, Transition(TaskState.RETRY_WAIT, not_before=later), T0)
    assert not store.work_due(T0 + dt.timedelta(minutes=5))
    assert store.work_due(later)
    store.request_cancel(task.id, T0)
    assert not store.work_due(later)


# ----------------------------------------------------------------------------- wake-ups
def test_enqueue_requeue_and_failover_wake_a_listener(store: Store) -> None:
    woken = threading.Semaphore(0)
    listener = store.listen(woken.release)
    try:
        if store.dialect == "postgresql":  # one wake-up once LISTEN is in place (and at each reconnect)
            assert woken.acquire(timeout=10), "the listener never connected"
        task = add(store, 1)
        assert woken.acquire(timeout=10), "an enqueue did not wake the listener"
        claimed = store.claim_and_start("me", LEASE, T0, start_now)
        assert claimed is not None and claimed.attempt is not None
        store.finish_attempt(claimed.attempt.id, "me", END, Transition(TaskState.QUEUED), T0)
        assert woken.acquire(timeout=10), "a requeued failover did not wake the listener"
        store.request_cancel(task.id, T0)
        assert store.requeue_task(task.id, T0)
        assert woken.acquire(timeout=10), "adw retry did not wake the listener"
    finally:
        listener.close()


def test_a_dead_listeners_fifo_is_removed_and_a_live_one_poked(tmp_path: Any) -> None:
    directory = tmp_path / "adw.db.wake"
    directory.mkdir()
    os.mkfifo(directory / "dead.fifo")  # nobody reads it
    woken = threading.Event()
    live = wakeups.FifoListener(directory, woken.set).start()
    try:
        assert wakeups.poke(directory) == 1
        assert woken.wait(10)
        assert not (directory / "dead.fifo").exists()
    finally:
        live.close()
    assert list(directory.iterdir()) == []


def test_a_full_fifo_still_counts_as_woken_and_never_blocks(tmp_path: Any) -> None:
    directory = tmp_path / "w"
    blocked = threading.Event()
    listener = wakeups.FifoListener(directory, blocked.set)  # not started: nobody drains it
    try:
        for _ in range(70_000):  # more than a pipe buffer holds
            assert wakeups.poke(directory) == 1
    finally:
        listener.close()
    assert not blocked.is_set()
