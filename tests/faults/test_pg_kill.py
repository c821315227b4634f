"""PostgreSQL connections killed mid-run: real ``adw run`` coordinators keep going.

Two coordinators share one PostgreSQL database and a queue of tasks whose worker (the
harness's minimal agent, tests/coordinator/worker.py) takes a moment, so attempts are always
in flight; fifteen times during the run every connection to the database is terminated with
``pg_terminate_backend`` (what a failover, a restart of PostgreSQL or an idle-session killer
does).

What must hold, and why:

* Every coordinator survives (exits 0 at the end of the run, by itself) and every task ends
  ``succeeded``, with nothing left queued or running and no live attempt.
* Each task's agent ran exactly once (asserted; the weaker "at most once more per kill" is
  what remains possible in theory, see below).  A connection killed before COMMIT was sent
  committed nothing, and the store runs that method again on a fresh connection
  (adw_modules/queue/store/base.py).  One killed while COMMIT is on its way (the usual case:
  the backend dies while the client is between statements, and the client hears of it at
  COMMIT) may or may not have committed: the methods that are harmless to repeat (fenced on
  owner + attempt id, or idempotent; finish_attempt, renew_leases, ... listed in
  base.REPEATABLE_AFTER_COMMIT) are repeated too.  The others raise, and none of them can make
  an agent run twice: they come before the agent starts (claim_task, start_attempt: the
  task's lease runs out and it is claimed again, having run nowhere) or after its result is
  stored (update_provider_state, release of a trial).  An agent could run once more only if
  the repeat itself lost its connection too (a second kill inside one store call) and the
  result was then dropped (the lease runs out, the task is requeued): at most once more per
  kill, which these kills, seconds apart, do not produce.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from adw_modules.queue.store import Store
from adw_modules.queue.tasks import TaskState
from adw_modules.sources.local import enqueue_local
from tests.coordinator.harness import (
    PG_ADMIN_URL,
    WORKER,
    Coord,
    Setup,
    coordinators,
    kill_pid,
    scratch_pg_database,
    wait_for,
)

pytestmark = pytest.mark.postgres

N_TASKS = 80
N_COORDINATORS = 2
KILL_AT = tuple(
    k / 20 for k in range(1, 16)
)  # 15 kills, about one per 0.2 s of the run  # fractions of the tasks done when all connections are terminated


def terminate_connections(admin: sa.Engine, database: str) -> int:
    """Terminate every connection to ``database`` but our own; how many there were."""
    with admin.connect() as conn:
        killed = conn.execute(
            sa.text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = :db AND pid <> pg_backend_pid()"
            ),
            {"db": database},
        ).scalar_one()
    return int(killed)


@pytest.fixture
def open_store() -> Iterator[Callable[[str], Store]]:
    """``open_store(url)``: the test's own view of the store, closed at teardown."""
    opened: list[Store] = []

    def open_(url: str) -> Store:
        opened.append(Store.open(url))
        return opened[-1]

    yield open_
    for s in opened:
        s.close()


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[tuple[Setup, sa.Engine]]:
    """A fresh database with the schema, a worker that takes 0.3 s, and an admin engine on it."""
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not reachable ({exc.orig}); set ADW_TEST_PG_URL", pytrace=False)
    try:
        with scratch_pg_database() as url:
            Store.open(url).close()
            setup = Setup(tmp_path, url, mode="sleep:0.3")
            try:
                yield setup, admin
            finally:
                for pid in setup.log.all_pids():
                    kill_pid(pid)  # a worker still running here is ours (sleep mode ends by itself)
    finally:
        admin.dispose()


def run_with_kills(
    setup: Setup, admin: sa.Engine, coords: list[Coord], open_store: Callable[[str], Store]
) -> tuple[list[int], int]:
    store = open_store(setup.store_url)
    ids = [enqueue_local(store, f"task {i}", external_id=f"t{i}").id for i in range(N_TASKS)]
    for i in range(N_COORDINATORS):
        cfg = setup.config(f"coord-{i}", max_concurrency=4, lease_s=5, retry_base_s=0.5, retry_max_s=0.5)
        coords.append(Coord(cfg, mode="until_idle"))
    database = sa.make_url(setup.store_url).database
    assert database is not None
    kills = 0
    for fraction in KILL_AT:
        goal = int(fraction * N_TASKS)

        def reached(goal: int = goal) -> bool:
            return len(setup.log.done()) >= goal

        wait_for(reached, 60, f"{goal} tasks done before a kill")
        # Right after a kill the coordinators may hold no connection yet (they reconnect on their
        # next statement, and a wave of finishing workers can reach two goals at once): kill as
        # soon as there is something to kill.
        wait_for(lambda: terminate_connections(admin, database) > 0, 20, "a coordinator connection to terminate", 0.01)
        kills += 1
    for c in coords:
        rc = c.wait(60)
        assert rc == 0, f"{c.config} exited {rc}:\n{c.output()[-3000:]}"
    return ids, kills


def test_coordinators_survive_killed_connections_and_run_each_task_once(
    pg: tuple[Setup, sa.Engine], open_store: Callable[[str], Store]
) -> None:
    setup, admin = pg
    with coordinators() as coords:
        ids, kills = run_with_kills(setup, admin, coords, open_store)
    store = open_store(setup.store_url)

    done = setup.log.done()
    assert sorted(done) == sorted(ids), f"{len(set(ids) - set(done))} tasks never ran on the worker side"
    twice = {t: n for t, n in done.items() if n > 1}
    assert not twice, f"tasks whose agent ran more than once ({kills} kills): {twice}"

    states = Counter(str(t.state) for t in store.list_tasks(limit=10 * N_TASKS))
    assert states == {str(TaskState.SUCCEEDED): N_TASKS}, f"task states: {dict(states)}"
    assert store.running_attempts() == []
    for c in coords:
        assert c.find("service.stopped"), f"{c.config} did not stop cleanly:\n{c.output()[-3000:]}"
    assert WORKER.exists()
