"""Issue #11 in the coordinator: every way an attempt ends is bounded, a failing step gives back
what it took, a busy provider causes no event storm, the daily cap follows the routing timezone.

In-process coordinators on a real store with the dry-run agent as the CLI (see test_coordinator).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from adw_modules.claiming import local_day
from adw_modules.config.schema import load_config
from adw_modules.coordinator import Coordinator
from adw_modules.dispatch import render_prompt
from adw_modules.outcomes import NotReady
from adw_modules.queue.store import Store
from adw_modules.queue.tasks import AttemptEnd, AttemptStart, CircuitState, ProviderState, Task, TaskState, Transition
from adw_modules.sources.local import enqueue_local
from adw_modules.workspace.worktrees import Worktree
from tests.coordinator.harness import scratch_pg_database
from tests.coordinator.test_coordinator import T0, Clock, provider

ROUTE_A = """
[routing]
enabled = true
default_provider = "a"
default_model = "claude-haiku-4-5"
"""


def counted_provider(tmp_path: Path, name: str = "a", extra: str = "", fail: str = "crash@0") -> str:
    """A dry-run provider whose every run adds one to ``<tmp>/<name>.runs`` (``crash@0``
    never fails, but counts)."""
    runs = tmp_path / f"{name}.runs"
    return provider(name, f'ADW_DRY_RUN_FAIL = "{fail}", ADW_DRY_RUN_STATE = "{runs}"', extra=extra)


def runs(tmp_path: Path, name: str = "a") -> int:
    try:
        return int((tmp_path / f"{name}.runs").read_text().strip() or 0)
    except FileNotFoundError:
        return 0


def build(
    tmp_path: Path, providers: str, routing: str = ROUTE_A, coordinator: str = "", url: str | None = None
) -> tuple[Coordinator, Store, Clock]:
    path = tmp_path / "config.toml"
    path.write_text(
        providers
        + textwrap.dedent(routing)
        + textwrap.dedent(
            f"""
            [coordinator]
            name = "test"
            max_concurrency = 4
            max_total_attempts = 3
            retry_base_s = 10
            retry_max_s = 10
            retry_jitter = 0
            state_dir = "state"
            {coordinator}
            """
        )
    )
    store = Store.open(url or f"sqlite:///{tmp_path / 'adw.db'}")
    clock = Clock()
    coord = Coordinator(load_config(path), store, clock=clock)
    coord.startup()
    return coord, store, clock


@pytest.fixture
def stores() -> Iterator[list[Store]]:
    opened: list[Store] = []
    yield opened
    for s in opened:
        s.close()


def drive(coord: Coordinator, clock: Clock, passes: int = 10, step_s: float = 130) -> None:
    """What the service does, pass after pass: dispatch, wait for the attempts, let time pass
    (past backoffs and leases), heartbeat, reap."""
    for _ in range(passes):
        coord.dispatch()
        assert coord.wait_idle(30), "attempts did not finish"
        clock.advance(step_s)
        coord.heartbeat()
        coord.reap()


def failing(real: Callable[..., Any], times: int | None = None) -> Callable[..., Any]:
    """``real``, raising a database-like error on its first ``times`` calls (None: every call)."""
    calls = [0]

    def call(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if times is None or calls[0] <= times:
            raise sa.exc.DataError("INSERT … (a very long statement)", {}, Exception("refused\nsecond line"))
        return real(*args, **kwargs)

    return call


# ----------------------------------------------------------------------------- recording the end
def test_a_result_the_store_refuses_is_recorded_without_its_texts(tmp_path: Path, stores: list[Store]) -> None:
    """``_watch`` only logged a failed finish_attempt: the task stayed running, the lease lapsed
    and the reaper requeued it, forever (a paid run every lease)."""
    coord, store, clock = build(tmp_path, counted_provider(tmp_path))
    stores.append(store)
    store.finish_attempt = failing(store.finish_attempt, times=1)  # type: ignore[method-assign]
    task = enqueue_local(store, "record me")
    drive(coord, clock, passes=2)
    done = store.get_task(task.id)
    assert done is not None and done.state is TaskState.SUCCEEDED, done
    (att,) = store.attempts_for(task.id)
    assert att.outcome == "success" and att.result_text is None
    assert att.error_message == "result not recorded: DataError: (builtins.Exception) refused"
    assert runs(tmp_path) == 1


def test_a_store_that_never_records_ends_the_task_after_max_total_attempts(tmp_path: Path, stores: list[Store]) -> None:
    coord, store, clock = build(tmp_path, counted_provider(tmp_path))
    stores.append(store)
    store.finish_attempt = failing(store.finish_attempt)  # type: ignore[method-assign]
    task = enqueue_local(store, "never recorded")
    drive(coord, clock, passes=8)
    done = store.get_task(task.id)
    assert done is not None and done.state is TaskState.FAILED, done
    assert done.last_error == "could not record the result 3 times: DataError: (builtins.Exception) refused"
    assert runs(tmp_path) == 3
    assert [a.outcome for a in store.attempts_for(task.id)] == ["crashed"] * 3


def test_a_failure_keeping_the_work_does_not_lose_the_result(tmp_path: Path, stores: list[Store]) -> None:
    """A non-WorkspaceError in ``_keep_work`` escaped ``_finish``: the result was never recorded."""
    coord, store, clock = build(tmp_path, counted_provider(tmp_path))
    stores.append(store)

    class BrokenWorkspaces:
        def prepare(self, repo: str, task_id: int, number: int | None, title: str) -> Worktree:
            path = tmp_path / "wt"
            path.mkdir(exist_ok=True)
            return Worktree(repo, task_id, path, "adw/t", "0" * 40)

        def finish(self, wt: Worktree, message: str, push: bool) -> Any:
            raise RuntimeError("git exploded")

        class cfg:
            @staticmethod
            def should_push(succeeded: bool) -> bool:
                return False

    coord.workspaces = BrokenWorkspaces()  # type: ignore[assignment]
    task = enqueue_local(store, "keep my work", repo="o/r")
    drive(coord, clock, passes=2)
    done = store.get_task(task.id)
    assert done is not None and done.state is TaskState.SUCCEEDED, done
    assert any(e["kind"] == "workspace.error" and "git exploded" in e["message"] for e in store.events(task.id))
    assert runs(tmp_path) == 1


# ----------------------------------------------------------------------------- starting
def test_a_start_that_raises_waits_a_backoff_gives_back_the_trial_and_ends(tmp_path: Path, stores: list[Store]) -> None:
    """An exception in ``_start`` after taking the trial slot escaped dispatch, left the task
    claimed and the provider "trial running" for good."""
    coord, store, clock = build(tmp_path, counted_provider(tmp_path))
    stores.append(store)
    store.save_provider_state(ProviderState("a", circuit=CircuitState.OPEN, cooldown_until=T0))  # half-open now
    coord.reconcile(clock.now)  # as another coordinator's write is learnt

    def broken_start(*args: Any, **kwargs: Any) -> Any:
        raise OSError("fork failed")

    coord.attempts.start = broken_start  # type: ignore[method-assign]
    task = enqueue_local(store, "cannot start")
    assert coord.dispatch() == 0
    waiting = store.get_task(task.id)
    assert waiting is not None and waiting.state is TaskState.RETRY_WAIT
    assert waiting.not_before is not None and waiting.not_before > clock.now
    assert waiting.wait_reason == "could not start: OSError: fork failed"
    assert store.provider_states()["a"].probe_attempt_id is None
    assert store.running_attempts() == []
    drive(coord, clock, passes=5, step_s=30)
    done = store.get_task(task.id)
    assert done is not None and done.state is TaskState.FAILED, done
    assert done.last_error == "could not start 3 times: OSError: fork failed"
    assert store.provider_states()["a"].probe_attempt_id is None
    assert runs(tmp_path) == 0


def test_a_failed_claim_and_start_leaves_the_task_queued_and_uncounted(tmp_path: Path, stores: list[Store]) -> None:
    """The hot path claims and starts in one transaction: if it fails, nothing happened."""
    coord, store, clock = build(tmp_path, counted_provider(tmp_path))
    stores.append(store)
    store.claim_and_start = failing(store.claim_and_start, times=1)  # type: ignore[method-assign]
    task = enqueue_local(store, "start later")
    with pytest.raises(sa.exc.DataError):
        coord.dispatch()
    waiting = store.get_task(task.id)
    assert waiting is not None and waiting.state is TaskState.QUEUED and waiting.attempt_count == 0
    assert store.attempts_for(task.id) == [] and runs(tmp_path) == 0
    drive(coord, clock, passes=2, step_s=30)
    done = store.get_task(task.id)
    assert done is not None and done.state is TaskState.SUCCEEDED and done.attempt_count == 1
    assert runs(tmp_path) == 1


def test_a_store_failure_before_the_attempt_is_counted_and_released(tmp_path: Path, stores: list[Store]) -> None:
    """A task that needs preparing (here: a prompt its source renders) is claimed first and
    started after: a failure between the two counts and gives the task back."""
    coord, store, clock = build(tmp_path, counted_provider(tmp_path))
    stores.append(store)
    coord.prompt_renderers["local"] = render_prompt
    store.start_attempt = failing(store.start_attempt, times=1)  # type: ignore[method-assign]
    task = enqueue_local(store, "start later")
    assert coord.dispatch() == 0
    waiting = store.get_task(task.id)
    assert waiting is not None and waiting.state is TaskState.RETRY_WAIT and waiting.attempt_count == 1
    drive(coord, clock, passes=2, step_s=30)
    done = store.get_task(task.id)
    assert done is not None and done.state is TaskState.SUCCEEDED and done.attempt_count == 2
    assert runs(tmp_path) == 1


def test_a_prompt_that_is_not_ready_waits_until_the_source_says(tmp_path: Path, stores: list[Store]) -> None:
    """A renderer raising NotReady (GitHub rate-limited until a reset) was requeued at once:
    a request every dispatch pass."""
    coord, store, _clock = build(tmp_path, counted_provider(tmp_path))
    stores.append(store)
    until = T0 + dt.timedelta(minutes=7)

    def not_ready(task: Task) -> str:
        raise NotReady("GitHub rate limit: waiting for its reset", until)

    coord.prompt_renderers["local"] = not_ready
    task = enqueue_local(store, "rate limited")
    assert coord.dispatch() == 0
    waiting = store.get_task(task.id)
    assert waiting is not None
    assert (waiting.state, waiting.not_before, waiting.wait_reason, waiting.attempt_count) == (
        TaskState.RETRY_WAIT,
        until,
        "GitHub rate limit: waiting for its reset",
        0,
    )
    assert coord.dispatch() == 0 and store.get_task(task.id) == waiting  # not claimed again before `until`


# ----------------------------------------------------------------------------- trial slots
def test_a_trial_whose_coordinator_vanished_is_freed_by_the_reaper(tmp_path: Path, stores: list[Store]) -> None:
    """Kill-like: the trial slot is taken and its attempt never finishes (no heartbeat, no
    result); once the lease expires another coordinator's reaper frees the slot."""
    coord, store, clock = build(tmp_path, counted_provider(tmp_path, fail="hang"))
    stores.append(store)
    store.save_provider_state(ProviderState("a", circuit=CircuitState.OPEN, cooldown_until=T0))
    coord.reconcile(clock.now)
    task = enqueue_local(store, "trial")
    assert coord.dispatch() == 1
    assert store.provider_states()["a"].probe_attempt_id == task.id
    # From here on this coordinator is as good as dead: it gives nothing back.
    coord._release_trial = lambda provider, task_id: None  # type: ignore[method-assign]
    other = Coordinator(coord.config, store, clock=lambda: clock.now + dt.timedelta(seconds=61))
    other.name, other.owner = "other", "other/1"
    assert [t.id for t, _ in store.reap_expired(clock.now)] == []
    assert other.reap() == 1  # kills the hung worker (same host) and requeues the task
    assert store.provider_states()["a"].probe_attempt_id is None
    assert coord.wait_idle(20)
    assert store.provider_states()["a"].probe_attempt_id is None


# ----------------------------------------------------------------------------- event storms
def test_tasks_waiting_for_a_busy_provider_are_not_claimed_each_pass(tmp_path: Path, stores: list[Store]) -> None:
    """50 tasks waiting for a provider at max_concurrency were claimed, released and given a
    new task.waiting event on every pass (49 events a pass)."""
    coord, store, clock = build(tmp_path, counted_provider(tmp_path, extra="max_concurrency = 1"))
    stores.append(store)
    busy = enqueue_local(store, "running elsewhere")
    claimed = store.claim_task("elsewhere/1", clock.now + dt.timedelta(hours=1), clock.now)
    assert claimed is not None and claimed.id == busy.id
    start = AttemptStart("a", "claude-haiku-4-5", None, {}, "x", "elsewhere")
    assert store.start_attempt(busy.id, "elsewhere/1", start, clock.now) is not None
    waiting = [enqueue_local(store, f"wait {n}").id for n in range(50)]
    coord.reconcile(clock.now)  # what the next reconciliation learns of the other coordinator

    statements: list[str] = []
    sa.event.listen(
        store.engine,
        "before_cursor_execute",
        lambda *a: None if a[2].startswith(("BEGIN", "COMMIT")) else statements.append(a[2]),
    )
    per_pass = []
    for _ in range(5):
        statements.clear()
        assert coord.dispatch() == 0
        per_pass.append(list(statements))
    waits = [e for e in store.events(limit=1000) if e["kind"] == "task.waiting"]
    assert len(waits) == 50 and {e["task_id"] for e in waits} == set(waiting)
    assert all(t.wait_reason == "waiting for a: at max_concurrency 1" for t in map(store.get_task, waiting) if t)
    for later in per_pass[1:]:
        assert len(later) <= 8, later
        assert not any(s.lstrip().upper().startswith(("UPDATE", "INSERT")) for s in later), later
    print(f"statements per dispatch pass with 50 waiting tasks: {[len(p) for p in per_pass]}")

    # The provider frees up: the oldest waiting task starts on the next pass.
    assert store.finish_attempt(
        store.running_attempts()[0].id, "elsewhere/1", AttemptEnd("success"), Transition(TaskState.SUCCEEDED), clock.now
    )
    coord.reconcile(clock.now)
    assert coord.dispatch() == 1
    assert len(store.attempts_for(waiting[0])) == 1  # the oldest waiting task started
    assert coord.wait_idle(30)


# ----------------------------------------------------------------------------- clocks
def test_the_daily_cap_resets_at_midnight_in_the_routing_timezone(tmp_path: Path, stores: list[Store]) -> None:
    """The cap reset at UTC midnight while routing (hours, weekdays) uses [routing] timezone."""
    routing = ROUTE_A + 'timezone = "Europe/Berlin"\n'
    coord, store, _clock = build(tmp_path, counted_provider(tmp_path, extra="daily_budget_usd = 1.0"), routing)
    stores.append(store)
    berlin_midnight = dt.datetime(2026, 11, 22, 23, 0, tzinfo=dt.UTC)  # 00:00 on the 23rd in Berlin

    def spend(at: dt.datetime) -> None:
        enqueue_local(store, f"spent at {at}")
        task = store.claim_task("o", at + dt.timedelta(minutes=1), at)
        assert task is not None
        att = store.start_attempt(task.id, "o", AttemptStart("a", "m", None, {}, "x", "h"), at)
        assert att is not None
        assert store.finish_attempt(
            att.id, "o", AttemptEnd("success", cost_usd=2.0), Transition(TaskState.SUCCEEDED), at
        )

    spend(berlin_midnight - dt.timedelta(minutes=30))  # yesterday, in Berlin (today in UTC)
    now = berlin_midnight + dt.timedelta(minutes=30)
    coord.reconcile(now)  # the spend is another coordinator's: seen once reconciled
    assert "a" not in coord.unavailable(now).down
    spend(berlin_midnight + dt.timedelta(minutes=10))
    coord.reconcile(now)
    gates = coord.unavailable(now)
    assert gates.down["a"] == "daily spend $2.00 reached its cap of $1.00"
    assert gates.until["a"] == berlin_midnight + dt.timedelta(days=1)
    # Across a DST change the local day is 25 hours long.
    start, end = local_day(dt.datetime(2026, 10, 25, 12, tzinfo=dt.UTC), "Europe/Berlin")
    assert end - start == dt.timedelta(hours=25)


# ----------------------------------------------------------------------------- PostgreSQL end to end
@pytest.mark.postgres
def test_a_nul_in_a_task_reaches_the_agent_and_its_result_is_recorded_on_postgresql(
    tmp_path: Path, stores: list[Store]
) -> None:
    """On PostgreSQL a NUL in a body was a traceback, and a NUL in a result an endless loop."""
    with scratch_pg_database() as url:
        coord, store, clock = build(tmp_path, counted_provider(tmp_path), url=url)
        try:
            task = enqueue_local(store, "title with \x00 a NUL", "body \x00 too\x00")
            stored = store.get_task(task.id)
            assert stored is not None and (stored.title, stored.body) == ("title with \x00 a NUL", "body \x00 too\x00")
            drive(coord, clock, passes=2)
            done = store.get_task(task.id)
            assert done is not None and done.state is TaskState.SUCCEEDED, done
            (att,) = store.attempts_for(task.id)
            digest = hashlib.sha256(render_prompt(stored).encode()).hexdigest()[:12]
            assert att.result_text is not None and f"sha256 {digest}" in att.result_text  # the agent got it all
            assert "title with \ufffd a NUL" in att.result_text  # the NUL it echoed, made storable
            assert runs(tmp_path) == 1
        finally:
            store.close()
