"""Issue #11 in the store: storable text, bounded crash requeues, trial slots that expire,
waiting without claiming, leases on the database's clock, lossless first source-state merges.
Run on SQLite and PostgreSQL (see conftest.store) unless a test says otherwise."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading

import pytest
import sqlalchemy as sa

from adw_modules.queue import health
from adw_modules.queue.store import Store
from adw_modules.queue.store.text import NUL_ESCAPE, escape_text, storable, unescape_text
from adw_modules.queue.tasks import AttemptEnd, CircuitState, NewTask, ProviderState, TaskState, Transition
from tests.queue.store.test_store_contract import LEASE, START, T0, add, claimed_with_attempt, elapse

UNSTORABLE = "before\x00after \ud800 lone \udfff end"


# ----------------------------------------------------------------------------- text
def test_a_result_with_nul_and_lone_surrogates_is_recorded(store: Store) -> None:
    """PostgreSQL refused NUL (DataError) and both drivers lone surrogates: the attempt's end was
    never recorded and the task ran again forever."""
    task, attempt = claimed_with_attempt(store, "o")
    end = AttemptEnd(
        "success", result_text=UNSTORABLE, error_message=UNSTORABLE, stderr_tail=UNSTORABLE, session_id="s\x00"
    )
    transition = Transition(TaskState.RETRY_WAIT, not_before=T0, wait_reason=UNSTORABLE, last_error=UNSTORABLE)
    assert store.finish_attempt(attempt.id, "o", end, transition, T0)
    (done,) = store.attempts_for(task.id)
    expected = "before\ufffdafter \ufffd lone \ufffd end"
    assert (done.result_text, done.error_message, done.stderr_tail, done.session_id) == (
        expected,
        expected,
        expected,
        "s\ufffd",
    )
    t = store.get_task(task.id)
    assert t is not None and (t.wait_reason, t.last_error) == (expected, expected)


def test_events_and_source_state_take_unstorable_text(store: Store) -> None:
    task = add(store, 1)
    store.add_event("k", UNSTORABLE, task_id=task.id, data={"key\x00": ["v\x00", {"n": "\ud800"}]}, now=T0)
    (event,) = store.events(task.id)
    assert event["message"] == storable(UNSTORABLE)
    assert event["data"] == {"key\ufffd": ["v\ufffd", {"n": "\ufffd"}]}
    assert store.update_source_state(task.id, {"comment": "x\x00y"}, T0) == {"comment": "x\ufffdy"}
    assert store.source_state(task.id) == {"comment": "x\ufffdy"}


def test_a_title_and_body_with_nul_come_back_exactly(store: Store) -> None:
    """The agent must get a task's body as it was written, NUL included, on both backends."""
    body = f"line\x00one {NUL_ESCAPE} escape{NUL_ESCAPE}0 literal\x00"
    task, created = store.upsert_task(NewTask("local", "nul", "ti\x00tle", body))
    assert created
    got = store.get_task(task.id)
    assert got is not None and (got.title, got.body) == ("ti\x00tle", body)
    # A re-poll of the same text is no change (updated_at stays), a lone surrogate included.
    again, created = store.upsert_task(NewTask("local", "nul", "ti\x00tle", body))
    assert not created and again.updated_at == task.updated_at
    sur, _ = store.upsert_task(NewTask("local", "sur", "t", "x\ud800y"))
    assert sur.body == "x\ufffdy"
    assert store.upsert_task(NewTask("local", "sur", "t", "x\ud800y"))[0].updated_at == sur.updated_at


def test_the_escape_round_trips() -> None:
    for text in ["", "plain", "\x00", NUL_ESCAPE, NUL_ESCAPE + "0", "\x00" + NUL_ESCAPE * 3 + "0\x00", "a\x00\x00b"]:
        assert unescape_text(escape_text(text)) == text
        assert "\x00" not in escape_text(text)
    assert unescape_text("rows written before the escape: \x00 kept") == "rows written before the escape: \x00 kept"


# ----------------------------------------------------------------------------- bounded requeues
def _reap_once(store: Store, owner: str, max_total: int) -> tuple[TaskState, str | None]:
    task = store.claim_task(owner, T0 + LEASE, T0)
    assert task is not None
    assert store.start_attempt(task.id, owner, START, T0) is not None
    elapse(store, 2 * LEASE)
    ((t, _),) = store.reap_expired(T0 + 2 * LEASE, max_total)
    return t.state, t.last_error


def test_a_task_whose_lease_is_lost_again_and_again_fails(store: Store) -> None:
    """``_requeue_crashed`` never checked max_total_attempts: a task whose coordinator always
    died (or whose result could never be recorded) was requeued forever."""
    add(store, 1)
    assert _reap_once(store, "dead", 3)[0] is TaskState.QUEUED
    assert _reap_once(store, "dead", 3)[0] is TaskState.QUEUED
    state, reason = _reap_once(store, "dead", 3)
    assert state is TaskState.FAILED
    assert reason == "lease lost 3 times: coordinator dead stopped heartbeating"
    assert store.claim_task("o", T0 + LEASE, T0) is None


def test_abandoned_attempts_wait_and_then_fail_saying_what_happened(store: Store) -> None:
    add(store, 1)
    for n in (1, 2, 3):
        now = T0 + dt.timedelta(seconds=10 * n)
        task = store.claim_task("o", now + LEASE, now)
        assert task is not None and task.attempt_count == n
        attempt = store.start_attempt(task.id, "o", START, now)
        assert attempt is not None
        wait = now + dt.timedelta(seconds=5)
        assert store.abandon_attempt(attempt.id, "o", now, "could not record the result: DataError: boom", 3, wait)
        t = store.get_task(task.id)
        assert t is not None
        if n < 3:
            assert (t.state, t.not_before, t.wait_reason) == (
                TaskState.RETRY_WAIT,
                wait,
                "could not record the result: DataError: boom",
            )
            assert store.claim_task("o", now + LEASE, now) is None  # waits its backoff
    assert t is not None and t.state is TaskState.FAILED
    assert t.last_error == "could not record the result 3 times: DataError: boom"


def test_mixed_endings_say_how_many_of_which(store: Store) -> None:
    add(store, 1)
    assert _reap_once(store, "dead", 2)[0] is TaskState.QUEUED
    task = store.claim_task("o", T0 + LEASE, T0)
    assert task is not None
    attempt = store.start_attempt(task.id, "o", START, T0)
    assert attempt is not None
    assert store.abandon_attempt(attempt.id, "o", T0, "crashed: orphan killed", 2)
    t = store.get_task(task.id)
    assert t is not None and t.state is TaskState.FAILED
    assert t.last_error == "gave up after 2 attempts (crashed 1 time); last: orphan killed"


def test_a_counted_release_keeps_the_attempt_counted(store: Store) -> None:
    task = add(store, 1)
    assert store.claim_task("o", T0 + LEASE, T0) is not None
    assert store.release_task(task.id, "o", TaskState.RETRY_WAIT, T0, "could not start", counted=True)
    assert store.get_task(task.id).attempt_count == 1  # type: ignore[union-attr]
    assert store.claim_task("o", T0 + LEASE, T0) is not None
    assert store.release_task(task.id, "o", TaskState.QUEUED, None, "busy")
    assert store.get_task(task.id).attempt_count == 1  # type: ignore[union-attr]


# ----------------------------------------------------------------------------- trial slots
def _half_open_trial_of(store: Store, task_id: int) -> ProviderState:
    store.save_provider_state(ProviderState("alpha", circuit=CircuitState.OPEN, cooldown_until=T0))
    return store.update_provider_state("alpha", lambda s: health.start_trial(s, task_id, T0) or s)


def test_the_reaper_frees_the_trial_slot_of_a_task_whose_lease_expired(store: Store) -> None:
    """A coordinator killed during its trial left the provider "trial running" for good."""
    task = add(store, 1)
    claimed = store.claim_task("dead", T0 + LEASE, T0)
    assert claimed is not None
    assert _half_open_trial_of(store, task.id).probe_attempt_id == task.id
    assert store.reap_expired(T0) == []  # the lease holds: so does the slot
    assert store.provider_states()["alpha"].probe_attempt_id == task.id
    elapse(store, 2 * LEASE)
    assert len(store.reap_expired(T0 + 2 * LEASE)) == 1
    state = store.provider_states()["alpha"]
    assert state.probe_attempt_id is None
    assert health.gate(state, T0 + LEASE).trial  # the next attempt may take the trial


def test_the_reaper_frees_a_trial_slot_whose_task_no_longer_runs(store: Store) -> None:
    """The slot was taken and the start failed without giving it back (the kill-like path)."""
    task = add(store, 1)
    assert store.claim_task("o", T0 + LEASE, T0) is not None
    _half_open_trial_of(store, task.id)
    assert store.release_task(task.id, "o", TaskState.QUEUED, None, "start failed")
    store.reap_expired(T0)
    assert store.provider_states()["alpha"].probe_attempt_id is None


# ----------------------------------------------------------------------------- waiting
def test_candidates_are_read_in_claim_order_without_claiming(store: Store) -> None:
    low = add(store, 1, priority="low")
    crit = add(store, 2, priority="critical")
    normal = add(store, 3)
    assert [t.id for t in store.claimable_tasks(T0, 10)] == [crit.id, normal.id, low.id]
    assert [t.id for t in store.claimable_tasks(T0, 1, exclude_ids={crit.id})] == [normal.id]
    assert all(t.state is TaskState.QUEUED for t in store.list_tasks())
    claimed = store.claim_task("o", T0 + LEASE, T0, task_id=low.id)
    assert claimed is not None and claimed.id == low.id
    assert store.claim_task("o", T0 + LEASE, T0, task_id=low.id) is None  # taken


def test_a_wait_reason_is_noted_once(store: Store) -> None:
    task = add(store, 1)
    assert store.note_waiting(task.id, "waiting for alpha: at max_concurrency 1", T0)
    assert not store.note_waiting(task.id, "waiting for alpha: at max_concurrency 1", T0)
    assert store.note_waiting(task.id, "waiting for alpha: at 5 attempts per minute", T0)
    t = store.get_task(task.id)
    assert (
        t is not None and t.state is TaskState.QUEUED and t.wait_reason == "waiting for alpha: at 5 attempts per minute"
    )
    assert store.claim_task("o", T0 + LEASE, T0) is not None
    assert not store.note_waiting(task.id, "x", T0)  # running: not a waiting task


def test_waiting_tasks_are_woken_by_their_reason(store: Store) -> None:
    """A reload that fixes a credential wakes the tasks released for "no usable target" now,
    not after their recheck delay; others (another reason, not yet due, queued) stay as they are."""
    later = T0 + dt.timedelta(minutes=1)
    ids = {}
    for n, (name, reason) in enumerate(
        (("a", "no usable target: w:m (KEY not set)"), ("b", "workspace: clone failed"))
    ):
        task = add(store, n + 1)
        claimed = store.claim_task("o", T0 + LEASE, T0, task_id=task.id)
        assert claimed is not None and store.release_task(task.id, "o", TaskState.RETRY_WAIT, later, reason)
        ids[name] = task.id
    queued = add(store, 3)
    assert store.wake_waiting("no_usable", T0) == []  # "_" is a character, not LIKE's wildcard
    assert store.wake_waiting("no usable target:", T0) == [ids["a"]]
    woken = store.get_task(ids["a"])
    assert woken is not None and woken.not_before == T0 and woken.state is TaskState.RETRY_WAIT
    assert [t.id for t in store.claimable_tasks(T0, 10)] == [ids["a"], queued.id]
    assert store.wake_waiting("no usable target:", T0) == []  # already due: nothing to do
    other = store.get_task(ids["b"])
    assert other is not None and other.not_before == later


# ----------------------------------------------------------------------------- PostgreSQL only
@pytest.mark.postgres
def test_a_host_with_a_fast_clock_cannot_reap_early(pg_url: str) -> None:
    """Leases on PostgreSQL run by the database's clock: a reaper whose clock is an hour ahead,
    or a claimer whose clock is an hour behind, must not end a live lease."""
    with Store.open(pg_url) as store:
        now = dt.datetime.now(dt.UTC)
        add(store, f"skew-{now.timestamp()}")
        behind = now - dt.timedelta(hours=1)
        claimed = store.claim_task("slow-clock", behind + LEASE, behind)
        assert claimed is not None and claimed.lease_expires_at is not None
        assert claimed.lease_expires_at > now + LEASE - dt.timedelta(seconds=5)
        assert store.reap_expired(now + dt.timedelta(hours=1)) == []
        assert store.renew_leases("slow-clock", [(claimed.id, None)], behind + 2 * LEASE, behind) == set()
        renewed = store.get_task(claimed.id)
        assert renewed is not None and renewed.lease_expires_at is not None
        assert renewed.lease_expires_at > now + 2 * LEASE - dt.timedelta(seconds=5)
        assert store.reap_expired(now + dt.timedelta(hours=1)) == []
        with store.engine.begin() as conn:  # really expired, by the database's clock
            conn.execute(
                sa.text("UPDATE tasks SET lease_expires_at = now() - interval '1 second' WHERE id = :i"),
                {"i": claimed.id},
            )
        assert [t.id for t, _ in store.reap_expired(behind)] == [claimed.id]


@pytest.mark.postgres
def test_concurrent_first_merges_of_source_state_lose_nothing(pg_url: str) -> None:
    """Two merges into a task that has no source state yet: ``FOR UPDATE`` had no row to lock,
    both read {}, and the second upsert overwrote the first's key."""
    with Store.open(pg_url) as store:
        stamp = dt.datetime.now(dt.UTC).timestamp()
        ids = [add(store, f"merge-{stamp}-{n}").id for n in range(40)]
        errors: list[BaseException] = []
        for task_id in ids:
            barrier = threading.Barrier(2)

            def merge(key: str, task_id: int = task_id, barrier: threading.Barrier = barrier) -> None:
                try:
                    barrier.wait(5)
                    store.update_source_state(task_id, {key: 1}, T0)
                except BaseException as exc:  # re-raised below, in the test's thread
                    errors.append(exc)

            threads = [threading.Thread(target=merge, args=(key,)) for key in ("poll", "sync")]
            for t in threads:
                t.start()
            for t in threads:
                t.join(10)
            assert not errors, errors
            assert store.source_state(task_id) == {"poll": 1, "sync": 1}, task_id
        # A later merge keeps what is there and overwrites only its own keys.
        assert store.update_source_state(ids[0], {"poll": 2, "new": "x"}, T0) == {"poll": 2, "sync": 1, "new": "x"}


def test_provider_state_dataclass_is_unchanged_by_the_reaper_when_no_trial(store: Store) -> None:
    store.save_provider_state(ProviderState("alpha", circuit=CircuitState.OPEN, cooldown_until=T0, trips=2))
    before = store.provider_states()["alpha"]
    store.reap_expired(T0)
    assert dataclasses.replace(store.provider_states()["alpha"], updated_at=None) == dataclasses.replace(
        before, updated_at=None
    )
