"""``adw cancel`` on a running task: the owning ``adw run`` kills the worker and the task ends cancelled."""

from __future__ import annotations

import signal
from collections.abc import Callable

from adw_modules.queue.store import Store
from adw_modules.queue.tasks import TaskState
from adw_modules.sources.local import enqueue_local
from tests.coordinator.harness import Coord, Setup, adw, process_gone, wait_for


def test_cancel_kills_the_running_worker(
    sqlite_setup: Setup, coords: list[Coord], open_store: Callable[[str], Store]
) -> None:
    sqlite_setup.mode = "hang"
    store = open_store(sqlite_setup.store_url)
    task = enqueue_local(store, "cancel me")
    other = enqueue_local(store, "keep me")
    cfg = sqlite_setup.config("cancel", heartbeat_s=0.5)
    c = Coord(cfg)
    coords.append(c)

    def pids() -> dict[int, int] | None:
        running = {a.task_id: a.pid for a in store.running_attempts() if a.pid is not None}
        written = {t: sqlite_setup.log.pid_of(t) for t in (task.id, other.id)}  # the workers' own word
        return running if len(running) == 2 and None not in written.values() else None

    workers = wait_for(pids, 20, "both workers to start")
    assert workers[task.id] == sqlite_setup.log.pid_of(task.id)

    done = adw(cfg, "cancel", str(task.id))
    assert done.returncode == 0, done.stderr
    assert "cancel requested" in done.stdout

    wait_for(
        lambda: (t := store.get_task(task.id)) and t.state is TaskState.CANCELLED,
        20,
        f"task {task.id} to end cancelled",
    )
    assert process_gone(workers[task.id]), "the cancelled task's worker still runs"
    (a,) = store.attempts_for(task.id)
    assert (a.state, a.outcome, a.error_kind) == ("finished", "cancelled", "cancelled"), a
    assert a.error_message == "cancelled: adw cancel"  # what cancelled it, not "by operator" for all
    cancelled = store.get_task(task.id)
    assert cancelled is not None and cancelled.last_error == "cancelled: adw cancel"
    assert any("cancelled: adw cancel" in e["message"] for e in store.events(task_id=task.id))
    # Only that task: the other worker runs on, under the same coordinator.
    assert not process_gone(workers[other.id])
    t = store.get_task(other.id)
    assert t is not None and t.state is TaskState.RUNNING
    assert c.proc.poll() is None

    # A cancelled task stays cancelled: nothing re-runs it.
    assert sqlite_setup.log.started()[task.id] == 1
    shown = adw(cfg, "task", "show", str(task.id), "--json")
    assert shown.returncode == 0 and '"cancelled"' in shown.stdout

    # The other worker hangs by design: a second SIGTERM skips the grace.  Sent only once the
    # first was acted on: two signals pending at once would merge into one.
    c.signal(signal.SIGTERM)
    c.wait_event("service.draining")
    c.signal(signal.SIGTERM)
    assert c.wait(20) == 0
    assert process_gone(workers[other.id])
