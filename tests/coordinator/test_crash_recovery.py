"""kill -9 of a coordinator mid-attempt: its orphan worker is killed and the task completes exactly once.

The worker hangs on a task's first run (after writing its pid) and succeeds on any later run,
so a second execution is visible on the worker side, and so is a lost or doubled one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psutil

from adw_modules.queue.store import Store
from adw_modules.queue.tasks import TaskState
from adw_modules.sources.local import enqueue_local
from tests.coordinator.harness import Coord, Setup, process_gone, wait_for


def _start_and_crash(setup: Setup, store: Store, coords: list[Coord], name: str, **settings: Any) -> tuple[int, int]:
    """Run one task under coordinator ``name`` until its worker hangs, then kill -9 the coordinator.

    Returns (task id, orphan worker pid); checks the orphan really outlived its coordinator.
    """
    task = enqueue_local(store, "survive a crash")
    first = Coord(setup.config(name, **settings))
    coords.append(first)
    pid = wait_for(lambda: setup.log.pid_of(task.id), 20, f"the worker of task {task.id} to write its pid")
    running = wait_for(
        lambda: [a for a in store.running_attempts() if a.task_id == task.id and a.pid is not None],
        20,
        "the store to record the worker's pid",
    )
    assert running[0].pid == pid
    first.kill9()
    assert not process_gone(pid), "the worker died with its coordinator: nothing left to recover"
    assert running[0].create_time is not None
    assert abs(psutil.Process(pid).create_time() - running[0].create_time) < 0.01
    t = store.get_task(task.id)
    assert t is not None and t.state is TaskState.RUNNING and t.owner is not None and t.owner.startswith(f"{name}/")
    return task.id, pid


def _check_completed_once(setup: Setup, store: Store, task_id: int, orphan: int, why: str) -> None:
    assert process_gone(orphan), f"orphan worker {orphan} still runs"
    t = store.get_task(task_id)
    assert t is not None and t.state is TaskState.SUCCEEDED, t
    assert t.retry_count == 0  # a coordinator crash is not the task's failure
    assert setup.log.started()[task_id] == 2  # the hung run and the one that completed
    assert setup.log.done()[task_id] == 1
    first, second = store.attempts_for(task_id)
    assert (first.state, first.outcome) == ("finished", "crashed"), first
    assert first.error_message is not None and why in first.error_message, first.error_message
    assert first.pid == orphan
    done_pid = next(pid for kind, task, pid in setup.log.lines() if kind == "done" and task == task_id)
    assert (second.outcome, second.pid) == ("success", done_pid)
    assert done_pid != orphan
    assert store.running_attempts() == []


def test_restarted_coordinator_kills_its_orphan_at_startup(
    sqlite_setup: Setup, coords: list[Coord], open_store: Callable[[str], Store]
) -> None:
    sqlite_setup.mode = "hang-first"
    store = open_store(sqlite_setup.store_url)
    settings: dict[str, Any] = {
        "lease_s": 120,
        "heartbeat_s": 1,
    }  # the lease outlives the test: only start-up recovery can act
    task_id, orphan = _start_and_crash(sqlite_setup, store, coords, "alpha", **settings)
    again = Coord(sqlite_setup.config("alpha", **settings), mode="until_idle")
    coords.append(again)
    assert again.wait(60) == 0, again.output()[-3000:]
    _check_completed_once(sqlite_setup, store, task_id, orphan, "coordinator restarted")
    recovered = [e for e in store.events(task_id=task_id) if e["kind"] == "task.recovered"]
    assert len(recovered) == 1 and "previous run" in recovered[0]["message"], recovered


def test_other_coordinator_recovers_after_the_lease_expires(
    sqlite_setup: Setup, coords: list[Coord], open_store: Callable[[str], Store]
) -> None:
    sqlite_setup.mode = "hang-first"
    store = open_store(sqlite_setup.store_url)
    task_id, orphan = _start_and_crash(sqlite_setup, store, coords, "alpha", lease_s=3, heartbeat_s=1)
    t = store.get_task(task_id)
    assert t is not None and t.lease_expires_at is not None
    other = Coord(sqlite_setup.config("beta", lease_s=3, heartbeat_s=1, reap_interval_s=1), mode="until_idle")
    coords.append(other)
    assert other.wait(60) == 0, other.output()[-3000:]
    _check_completed_once(sqlite_setup, store, task_id, orphan, "lease lost")
    first, second = store.attempts_for(task_id)
    assert first.owner.startswith("alpha/") and second.owner.startswith("beta/")
    assert first.ended_at is not None and first.ended_at > t.lease_expires_at  # reaped only once expired
    assert other.find("task.recovered", lambda r: r.get("task") == task_id)
