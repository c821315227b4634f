"""Four ``adw run`` processes on one PostgreSQL database share 500 tasks: each runs exactly once."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest

from adw_modules.queue.store import Store
from adw_modules.queue.tasks import TaskState
from adw_modules.sources.local import enqueue_local
from tests.coordinator.harness import Coord, Setup

N_TASKS = 500
N_COORDINATORS = 4

pytestmark = pytest.mark.postgres


def test_four_coordinators_run_500_tasks_exactly_once(
    pg_setup: Setup, coords: list[Coord], open_store: Callable[[str], Store]
) -> None:
    store = open_store(pg_setup.store_url)
    ids = [enqueue_local(store, f"task {i}", external_id=f"t{i}").id for i in range(N_TASKS)]
    names = [f"coord-{i}" for i in range(N_COORDINATORS)]
    configs = [pg_setup.config(name, max_concurrency=4) for name in names]
    coords += [Coord(cfg, mode="until_idle") for cfg in configs]

    for c in coords:
        rc = c.wait(240)
        assert rc == 0, f"{c.config} exited {rc}:\n{c.output()[-3000:]}"

    # Worker side: every task ran exactly once, no run of anything else.
    lines = pg_setup.log.lines()
    done = pg_setup.log.done()
    assert sorted(done) == sorted(ids), f"{len(set(ids) - set(done))} tasks never ran on the worker side"
    twice = {t: n for t, n in done.items() if n != 1}
    assert not twice, f"tasks ran more than once: {dict(list(twice.items())[:10])}"
    assert len(lines) == N_TASKS
    worker_pid = {task: pid for _, task, pid in lines}

    # Store side: all succeeded with exactly one attempt, whose pid is the worker's.
    tasks = store.list_tasks(limit=10 * N_TASKS)
    assert len(tasks) == N_TASKS
    states = Counter(str(t.state) for t in tasks)
    assert states == {str(TaskState.SUCCEEDED): N_TASKS}, f"task states: {dict(states)}"
    counts = store.counts_by_state_priority()
    assert not counts.get(str(TaskState.QUEUED)) and not counts.get(str(TaskState.RUNNING)), counts
    owners: Counter[str] = Counter()
    for task_id in ids:
        attempts = store.attempts_for(task_id)
        assert len(attempts) == 1, f"task {task_id}: {len(attempts)} attempts"
        (a,) = attempts
        assert (a.state, a.outcome, a.number) == ("finished", "success", 1), (task_id, a)
        assert a.pid == worker_pid[task_id], f"task {task_id}: store pid {a.pid}, worker pid {worker_pid[task_id]}"
        owners[a.owner] += 1
    assert store.running_attempts() == []

    # The work was really shared: more than one coordinator ran attempts, each under its own name.
    assert len(owners) > 1, f"one coordinator did everything: {dict(owners)}"
    assert {o.split("/")[0] for o in owners} <= set(names), owners
    started = sum(len(c.find("attempt.started")) for c in coords)
    finished = sum(len(c.find("attempt.finished")) for c in coords)
    assert started == finished == N_TASKS, (started, finished)
