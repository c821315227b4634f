"""Fault injection: every store method a task's life uses fails at its k-th call, once or from
then on, while one task runs through the real coordinator (the dry-run agent as its CLI).

Whatever fails, the task's life stays bounded: the agent ran at most ``max_total_attempts``
times, the task ends terminal or waiting with a reason (or was never claimed, when the fault
stops every claim), no trial slot is left taken, no worker process is left.  The provider
starts half-open, so the trial slot is taken and must be given back in every case.

``ADW_FAULT_MATRIX=1`` writes the results (method x k x mode x backend) to
.cache/faults-matrix.txt (see conftest.py).
"""

from __future__ import annotations

import datetime as dt
import logging
import textwrap
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from adw_modules.config.schema import load_config
from adw_modules.coordinator import Coordinator
from adw_modules.queue.store import Store
from adw_modules.queue.tasks import TERMINAL_STATES, CircuitState, ProviderState, Task, TaskState
from adw_modules.sources.local import enqueue_local
from tests.coordinator.test_bounded_coordinator import ROUTE_A, counted_provider, runs
from tests.faults.conftest import MATRIX
from tests.faults.faulty_store import FaultyStore, Mode

MAX_TOTAL_ATTEMPTS = 3
# Every store method the coordinator calls while one task lives: dispatch, start, supervise,
# finish, health, periodic duties, and the fallbacks that run when another call failed.
METHODS = [
    "provider_states",
    "provider_snapshot",
    "claim_and_start",
    "claimable_tasks",
    "claim_task",
    "renew_leases",
    "update_provider_state",
    "start_attempt",
    "set_attempt_process",
    "record_processes",
    "add_event",
    "record_usage",
    "finish_attempt",
    "release_task",
    "heartbeat_coordinator",
    "cancel_requested",
    "reap_expired",
    "abandon_attempt",
]
# Methods a plain life never calls: a first fault elsewhere leads the task through them.  For
# release_task the first start_attempt fails (the claim is given back); for abandon_attempt the
# worker's launch fails once after its attempt row was written (the attempt is ended).
LEAD_INS: dict[str, dict[str, int]] = {"release_task": {"start_attempt": 1}}
LAUNCH_FAILS_ONCE = {"abandon_attempt"}
QUIET_S = 0.4  # nothing changed for this long and nothing runs: the task has settled
QUIET_PASSES = 5  # ... and for this many passes of the loop
CASE_DEADLINE_S = 12.0

log = logging.getLogger("tests.faults")


def coordinator(tmp_path: Path, store: FaultyStore) -> Coordinator:
    path = tmp_path / "config.toml"
    path.write_text(
        counted_provider(tmp_path)
        + textwrap.dedent(ROUTE_A)
        + textwrap.dedent(
            f"""
            [coordinator]
            name = "faults"
            max_concurrency = 2
            max_total_attempts = {MAX_TOTAL_ATTEMPTS}
            lease_s = 1
            heartbeat_s = 0.3
            kill_grace_s = 1
            retry_base_s = 0.05
            retry_max_s = 0.1
            retry_jitter = 0
            state_dir = "{tmp_path / "state"}"
            """
        )
    )
    return Coordinator(load_config(path), store)  # type: ignore[arg-type]  # duck-typed Store


def duty(name: str, fn: object) -> None:
    """Run a periodic duty as the service's scheduler does: an exception is logged, not fatal."""
    try:
        fn()  # type: ignore[operator]
    except Exception:
        log.info("duty %s failed", name, exc_info=True)


def snapshot(store: Store, task_id: int, tmp_path: Path) -> tuple[object, ...]:
    t = store.get_task(task_id)
    assert t is not None
    return t.state, t.attempt_count, t.not_before, len(store.attempts_for(task_id)), runs(tmp_path)


def run_until_settled(coord: Coordinator, store: Store, task: Task, tmp_path: Path) -> Task:
    """dispatch, heartbeat, reap, as the service does, until the task is terminal or nothing
    has changed for QUIET_S while nothing runs."""
    deadline = time.monotonic() + CASE_DEADLINE_S
    last, changed_at = snapshot(store, task.id, tmp_path), time.monotonic()
    passes_since_change = 0
    while time.monotonic() < deadline:
        duty("dispatch", coord.dispatch)
        coord.wait_idle(0.2)
        duty("heartbeat", coord.heartbeat)
        duty("reap", coord.reap)
        now = snapshot(store, task.id, tmp_path)
        passes_since_change += 1
        if now != last:
            last, changed_at, passes_since_change = now, time.monotonic(), 0
        current = store.get_task(task.id)
        assert current is not None
        if current.state in TERMINAL_STATES and coord.running() == 0:
            return current
        # Quiet in time AND in passes: under CPU load one pass (the one a fault broke) can
        # outlast QUIET_S on its own, and the next pass would have done the work.
        quiet = time.monotonic() - changed_at > QUIET_S and passes_since_change >= QUIET_PASSES
        if quiet and current.state is not TaskState.RUNNING and coord.running() == 0:
            return current
        time.sleep(0.02)  # a backoff of 50-100 ms is what the loop waits for
    raise AssertionError(f"task {task.id} did not settle in {CASE_DEADLINE_S:g} s: {store.get_task(task.id)}")


def agent_processes() -> list[psutil.Process]:
    out = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE and any("dry-run-agent" in a for a in child.cmdline()):
                out.append(child)
        except psutil.Error:
            continue
    return out


def describe(task: Task, ran: int, faults: int) -> str:
    reason = task.last_error if task.state in (TaskState.FAILED, TaskState.CANCELLED) else task.wait_reason
    what = f"{task.state}, agent ran {ran}x, {task.attempt_count} attempts counted, {faults} faults"
    if task.state is TaskState.QUEUED and task.attempt_count == 0 and ran == 0:
        what += ", never claimed"
    return what + (f": {reason}" if reason else "")


@pytest.mark.parametrize("mode", ["once", "always"])
@pytest.mark.parametrize("k", [1, 2])
@pytest.mark.parametrize("method", METHODS)
def test_a_store_fault_leaves_the_task_bounded(
    method: str, k: int, mode: Mode, fault_store: Store, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    now = dt.datetime.now(dt.UTC)
    fault_store.save_provider_state(
        ProviderState("a", circuit=CircuitState.OPEN, cooldown_until=now - dt.timedelta(seconds=1))
    )  # half-open: the attempt must take (and give back) the trial slot
    faulty = FaultyStore(fault_store, method, k, mode, LEAD_INS.get(method))
    coord = coordinator(tmp_path, faulty)
    if method in LAUNCH_FAILS_ONCE:
        launch, launches = coord.attempts.start, [0]

        def fails_once(*args: Any, **kwargs: Any) -> Any:
            launches[0] += 1
            if launches[0] == 1:
                raise OSError("injected: the worker could not be started")
            return launch(*args, **kwargs)

        coord.attempts.start = fails_once  # type: ignore[method-assign]
    duty("startup", coord.startup)
    task = enqueue_local(fault_store, "survive the fault", "body")
    try:
        settled = run_until_settled(coord, fault_store, task, tmp_path)
    finally:
        coord.stop_all("shutdown")
        coord.wait_idle(10)
    ran = runs(tmp_path)
    backend = request.node.callspec.params["fault_store"]
    MATRIX[(method, k, mode, backend)] = describe(settled, ran, faulty.faults)

    assert ran <= MAX_TOTAL_ATTEMPTS, settled
    never_claimed = settled.state is TaskState.QUEUED and settled.attempt_count == 0 and ran == 0
    if settled.state not in TERMINAL_STATES and not never_claimed:
        assert settled.state in (TaskState.QUEUED, TaskState.RETRY_WAIT) and settled.wait_reason, settled
    if settled.state is TaskState.FAILED:
        assert settled.last_error, settled
    assert all(s.probe_attempt_id is None for s in fault_store.provider_states().values())
    assert fault_store.running_attempts() == []
    assert agent_processes() == []
    if mode == "once":
        # One fault, then the store works: the task gets done.
        assert settled.state is TaskState.SUCCEEDED, settled
