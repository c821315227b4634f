"""Chaos on PostgreSQL: 4 ``adw run`` coordinators share 500 tasks while every connection to
their database is terminated (``pg_terminate_backend``) every 10 s.

The worker is tests/coordinator/worker.py in ``sleep:S`` mode (it appends ``start`` and
``done`` lines to a file, so runs are counted on the worker side, whatever the store says).
Reported:

- lost: tasks that did not end ``succeeded`` (or never ran) by the end;
- duplicated: agent runs beyond the first, over all tasks; max runs of one task;
- total time (enqueue done -> every coordinator exited by itself, ``--until-idle``);
- per kill: connections terminated, and the recovery time: from the kill until the store
  records the next succeeded task (the coordinators are writing again);
- coordinators that exited non-zero, and how often the store ran a method again on a new
  connection (``store.reconnected`` log events).

Loopback only (ADW_TEST_PG_URL, default postgresql+psycopg://postgres@127.0.0.1:5432/postgres);
a scratch database is created and dropped (WITH FORCE).  Bounded: the kills stop when the
tasks are done or at ``--timeout``, and the coordinators are killed if still running then.

    .venv/bin/python bench/chaos_pg.py [--tasks 500] [--coordinators 4] [--kill-every 10] [--worker-s 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import sqlalchemy as sa  # noqa: E402

from adw_modules.queue.store import Store  # noqa: E402
from adw_modules.queue.tasks import TaskState  # noqa: E402
from adw_modules.sources.local import enqueue_local  # noqa: E402
from tests.coordinator.harness import PG_ADMIN_URL, Coord, Setup, coordinators, scratch_pg_database  # noqa: E402

POLL_S = 0.05


@dataclass
class Kill:
    at_s: float  # since the start of the run
    connections: int
    recovery_s: float | None = None  # None: no task succeeded after it (the run was ending)


@dataclass
class Run:
    total_s: float = 0.0
    kills: list[Kill] = field(default_factory=list)
    exit_codes: list[int] = field(default_factory=list)
    reconnects: int = 0


def terminate(admin: sa.Engine, database: str) -> int:
    with admin.connect() as conn:
        return int(
            conn.execute(
                sa.text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = :db AND pid <> pg_backend_pid()"
                ),
                {"db": database},
            ).scalar_one()
        )


def succeeded(admin: sa.Engine) -> int:
    """Succeeded tasks, read on the admin engine (its own connection, never one we kill)."""
    with admin.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM tasks WHERE state = 'succeeded'")).scalar_one())


def chaos(setup: Setup, args: argparse.Namespace, db_admin: sa.Engine, database: str) -> Run:
    run = Run()
    with coordinators() as coords:
        for i in range(args.coordinators):
            coords.append(Coord(setup.config(f"chaos-{i}", max_concurrency=4), mode="until_idle"))
        t0 = time.monotonic()
        deadline = t0 + args.timeout
        next_kill = t0 + args.kill_every
        pending: Kill | None = None
        pending_base = 0
        while time.monotonic() < deadline and any(c.proc.poll() is None for c in coords):
            now = time.monotonic()
            done = succeeded(db_admin)
            if pending is not None and done > pending_base:
                pending.recovery_s = now - t0 - pending.at_s
                pending = None
            if now >= next_kill and done < args.tasks:
                pending = Kill(now - t0, terminate(db_admin, database))
                pending_base = succeeded(db_admin)
                run.kills.append(pending)
                next_kill = now + args.kill_every
            time.sleep(POLL_S)
        run.total_s = time.monotonic() - t0
        for c in coords:
            rc = c.proc.poll()
            run.exit_codes.append(-999 if rc is None else rc)  # -999: still running at the timeout
            run.reconnects += len(c.find("store.reconnected"))
    return run


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", type=int, default=500)
    p.add_argument("--coordinators", type=int, default=4)
    p.add_argument("--kill-every", type=float, default=10.0, help="seconds between terminations")
    p.add_argument("--worker-s", type=float, default=2.0, help="how long each agent run takes")
    p.add_argument("--timeout", type=float, default=600.0)
    args = p.parse_args()

    with tempfile.TemporaryDirectory(prefix="adw-chaos-") as tmp, scratch_pg_database() as url:
        Store.open(url).close()
        setup = Setup(Path(tmp), url, mode=f"sleep:{args.worker_s:g}")
        database = sa.make_url(url).database
        assert database is not None
        db_url = sa.make_url(PG_ADMIN_URL).set(database=database)
        db_admin = sa.create_engine(db_url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
        try:
            with Store.open(url) as store:
                ids = [enqueue_local(store, f"chaos {i}", external_id=f"c{i}").id for i in range(args.tasks)]
            run = chaos(setup, args, db_admin, database)
            with Store.open(url) as store:
                states = {t.id: t.state for t in store.list_tasks(limit=10 * args.tasks)}
                live = len(store.running_attempts())
        finally:
            db_admin.dispose()
        report(args, run, setup.log.done(), ids, states, live)
    return 0


def report(
    args: argparse.Namespace, run: Run, done: Counter[int], ids: list[int], states: dict[int, TaskState], live: int
) -> None:
    lost = [t for t in ids if states.get(t) is not TaskState.SUCCEEDED or done[t] == 0]
    duplicated = sum(n - 1 for n in done.values() if n > 1)
    print(
        f"tasks={args.tasks} coordinators={args.coordinators} kill_every={args.kill_every:g}s worker={args.worker_s:g}s"
    )
    print(f"total time {run.total_s:.1f} s; kills {len(run.kills)}; coordinator exit codes {run.exit_codes}")
    most = max(done.values(), default=0)
    print(f"lost tasks {len(lost)}; duplicated agent runs {duplicated}; max runs per task {most}")
    print(f"live attempts left {live}; store methods run again after a dropped connection {run.reconnects}")
    print(f"task states {dict(Counter(str(s) for s in states.values()))}")
    for i, k in enumerate(run.kills, 1):
        rec = "n/a (no task succeeded after it)" if k.recovery_s is None else f"{k.recovery_s:.2f} s"
        print(f"  kill {i}: t={k.at_s:5.1f} s  connections={k.connections:2d}  recovery {rec}")


if __name__ == "__main__":
    raise SystemExit(main())
