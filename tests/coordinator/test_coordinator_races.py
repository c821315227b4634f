"""Regressions from review: a finished attempt's slot must not remove its successor's; a half-open
trial that ends without a recorded outcome gives its slot back; a live sibling coordinator's
workers are not orphans; a task whose cancellation was requested is not started."""

from __future__ import annotations

import datetime as dt
import os
import threading
from pathlib import Path
from typing import Any

import psutil

from adw_modules.config.schema import Target
from adw_modules.coordinator import Coordinator, Slot
from adw_modules.queue.tasks import CircuitState, ProviderState, TaskState
from adw_modules.sources.local import enqueue_local
from tests.coordinator.test_coordinator import ROUTE_A_THEN_B, make, provider, run_all


def test_a_finishing_slot_never_removes_the_next_attempts_slot(tmp_path: Path) -> None:
    coord, _store, _ = make(tmp_path, provider("a"), '[routing]\ndefault_provider = "a"\ndefault_model = "m"\n')
    old = Slot.__new__(Slot)
    new = Slot.__new__(Slot)
    for s in (old, new):
        s.task = type("T", (), {"id": 42})()
        s.target = Target("a", "m")
        s.trial = False
        s.health_recorded = True
    coord.slots[42] = new  # the task already runs again when the old attempt's watcher ends
    old.running = type("R", (), {"wait": staticmethod(lambda: (_ for _ in ()).throw(RuntimeError("done")))})()
    coord._watch(old)
    assert coord.slots[42] is new


def test_a_cancelled_trial_gives_the_trial_slot_back(tmp_path: Path) -> None:
    coord, store, clock = make(tmp_path, provider("a", 'ADW_DRY_RUN_FAIL = "hang"') + provider("b"), ROUTE_A_THEN_B)
    store.save_provider_state(
        ProviderState("a", circuit=CircuitState.OPEN, cooldown_until=clock.now - dt.timedelta(seconds=1))
    )
    coord.reconcile(clock.now)  # as another coordinator's write is learnt
    task = enqueue_local(store, "trial")
    assert coord.dispatch() == 1
    assert store.provider_states()["a"].probe_attempt_id == task.id
    store.request_cancel(task.id, clock.now)
    coord.heartbeat()
    assert coord.wait_idle(10)
    t = store.get_task(task.id)
    assert t is not None and t.state is TaskState.CANCELLED
    assert store.provider_states()["a"].probe_attempt_id is None  # the next task may try


def test_a_live_sibling_with_the_same_name_is_not_an_orphan(tmp_path: Path) -> None:
    coord, store, clock = make(
        tmp_path, provider("a", 'ADW_DRY_RUN_FAIL = "hang"'), '[routing]\ndefault_provider = "a"\ndefault_model = "m"\n'
    )
    enqueue_local(store, "long")
    assert coord.dispatch() == 1
    # A second coordinator process would register with its own pid; this one is alive (it is us).
    sibling = Coordinator(coord.config, store, clock=clock)
    sibling.startup()
    assert sibling.recover_orphans() == 0
    assert coord.running() == 1
    (att,) = store.running_attempts()
    assert att.pid is not None and os.path.exists(f"/proc/{att.pid}")
    coord.stop_all("shutdown")
    assert coord.wait_idle(10)


def test_a_sibling_whose_process_ran_long_before_it_registered_is_not_an_orphan(tmp_path: Path) -> None:
    """The cause of the flaky test above: liveness refused a process that had run for more than
    600 s before its coordinator registered, so late in a long (CPU-starved) suite run the
    pytest process itself, and so the coordinator it runs, counted as dead, and a sibling
    killed its worker.  Here the coordinator registers 700 s after its process began."""
    coord, store, clock = make(
        tmp_path, provider("a", 'ADW_DRY_RUN_FAIL = "hang"'), '[routing]\ndefault_provider = "a"\ndefault_model = "m"\n'
    )
    began = dt.datetime.fromtimestamp(psutil.Process().create_time(), dt.UTC)
    store.register_coordinator(coord.owner, coord.name, coord.host, os.getpid(), began + dt.timedelta(seconds=700))
    enqueue_local(store, "long")
    assert coord.dispatch() == 1
    sibling = Coordinator(coord.config, store, clock=clock)
    sibling.startup()
    assert sibling.recover_orphans() == 0
    assert coord.running() == 1
    coord.stop_all("shutdown")
    assert coord.wait_idle(10)


def test_a_task_whose_cancel_was_requested_is_not_started(tmp_path: Path) -> None:
    coord, store, clock = make(
        tmp_path,
        provider("a", 'ADW_DRY_RUN_FAIL = "crash"'),
        '[routing]\ndefault_provider = "a"\ndefault_model = "m"\n',
    )
    task = enqueue_local(store, "doomed")
    assert coord.dispatch() == 1
    store.request_cancel(task.id, clock.now)  # requested while running; the attempt then ends on its own
    assert coord.wait_idle(10)
    clock.advance(20)
    run_all(coord)
    t = store.get_task(task.id)
    assert t is not None and t.state is TaskState.CANCELLED and len(store.attempts_for(task.id)) == 1


def test_dispatch_runs_one_pass_at_a_time_and_again_when_asked_meanwhile(tmp_path: Path) -> None:
    """A watcher whose attempt ended dispatches from its own thread while the tick's pass may be
    running: the second call must not run a pass beside the first (both would see the same room),
    and what it asked for must not be lost."""
    coord, store, _ = make(tmp_path, provider("a"), '[routing]\ndefault_provider = "a"\ndefault_model = "m"\n')
    inside, release = threading.Event(), threading.Event()
    real = store.claim_and_start
    calls: list[int] = []

    def slow_claim(*args: Any, **kwargs: Any) -> Any:
        found = real(*args, **kwargs)  # the first pass finds the queue empty ...
        calls.append(1)
        if len(calls) == 1:
            inside.set()  # ... and is still running when the task arrives
            assert release.wait(10)
        return found

    store.claim_and_start = slow_claim  # type: ignore[method-assign]
    first: list[int] = []
    runner = threading.Thread(target=lambda: first.append(coord.dispatch()))
    runner.start()
    assert inside.wait(10)
    task = enqueue_local(store, "enqueued while the first pass looked")
    assert coord.dispatch() == 0  # returns at once: a pass is running
    release.set()
    runner.join(10)
    assert first == [1]  # the pass ran again, for the caller that returned at once, and started the task
    assert coord.wait_idle(30)
    assert store.get_task(task.id).state is TaskState.SUCCEEDED  # type: ignore[union-attr]


def test_successes_kept_in_memory_reach_the_store_by_shutdown(tmp_path: Path) -> None:
    """A success on a clean provider writes no health at once; its outcome must still be in the
    provider's success rate once the coordinator stops (the demo showed "-" before)."""
    coord, store, _ = make(tmp_path, provider("a"), '[routing]\ndefault_provider = "a"\ndefault_model = "m"\n')
    enqueue_local(store, "one")
    enqueue_local(store, "two")
    run_all(coord)
    assert "a" not in store.provider_states() or store.provider_states()["a"].recent == []
    coord.shutdown()
    assert store.provider_states()["a"].recent == [True, True]
