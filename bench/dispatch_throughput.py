"""End-to-end dispatch throughput of ``adw run`` with a trivial worker, against bare spawning.

Scenarios: 1 coordinator on SQLite, and 1, 2, 4 coordinators on one PostgreSQL database;
each coordinator has ``max_concurrency`` 4 and runs in its own ``adw run`` process.  N tasks
are enqueued first; the worker (tests/coordinator/worker.py, ``python -I -S``) appends one
line to a file and prints a Claude-style result line.

Right before each scenario the same worker argv is spawned N times with bare
``subprocess.run`` from a pool of 4 threads (the baseline: what spawning alone costs on
this machine at that moment).  Reported per scenario:

- tasks/s over the attempt window (first attempt start -> last attempt end, from the store)
  and end to end (launching the coordinators -> every task succeeded, start-up included);
- wall ms per task and its ratio to the baseline's ms per task;
- the coordinators' own CPU ms per task (psutil, children excluded) next to the workers' CPU.

Every scenario also checks that each task ran exactly once on the worker side.

    .venv/bin/python bench/dispatch_throughput.py [--tasks 300] [--only sqlite-1,pg-1,pg-2,pg-4]

PostgreSQL: ADW_TEST_PG_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/postgres);
a scratch database is created per scenario and dropped afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import psutil  # noqa: E402

from adw_modules.queue.store import Store  # noqa: E402
from adw_modules.queue.tasks import TaskState  # noqa: E402
from adw_modules.sources.local import enqueue_local  # noqa: E402
from tests.coordinator.harness import WORKER, Coord, Setup, coordinators, scratch_pg_database, wait_for  # noqa: E402

SCENARIOS = {"sqlite-1": ("sqlite", 1), "pg-1": ("pg", 1), "pg-2": ("pg", 2), "pg-4": ("pg", 4)}
CONCURRENCY = 4


@dataclass
class Row:
    scenario: str
    tasks: int
    window_s: float
    e2e_s: float
    coord_cpu_s: float
    worker_cpu_s: float
    baseline_s: float
    owners: int
    errors: int

    def per_task_ms(self) -> float:
        return self.window_s / self.tasks * 1000

    def baseline_ms(self) -> float:
        return self.baseline_s / self.tasks * 1000


def baseline(root: Path, n: int) -> float:
    """Seconds to spawn the worker n times with bare subprocess.run, 4 at a time."""
    log = root / "baseline.log"
    argv = [sys.executable, "-I", "-S", str(WORKER), "--log", str(log), "--mode", "ok"]

    def one(i: int) -> None:
        done = subprocess.run([*argv, str(i)], stdin=subprocess.DEVNULL, capture_output=True, check=False)
        assert done.returncode == 0 and b'"result"' in done.stdout, done

    t0 = time.perf_counter()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(one, range(n)))
    elapsed = time.perf_counter() - t0
    assert len(log.read_text().splitlines()) == n
    return elapsed


@contextlib.contextmanager
def store_url(kind: str, root: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{root / 'adw.db'}"
    else:
        with scratch_pg_database() as url:
            yield url


def scenario(name: str, n: int, root: Path, args_timeout: float = 300) -> Row:
    kind, count = SCENARIOS[name]
    root.mkdir(parents=True)
    base = baseline(root, n)
    with store_url(kind, root) as url, Store.open(url) as store, coordinators() as started:
        setup = Setup(root, url)
        for i in range(n):
            enqueue_local(store, f"task {i}")
        succeeded = str(TaskState.SUCCEEDED)
        t0 = time.perf_counter()
        started += [Coord(setup.config(f"c{i}", max_concurrency=CONCURRENCY)) for i in range(count)]

        def all_done() -> bool:
            for c in started:
                if c.proc.poll() is not None:
                    raise AssertionError(f"{c.config} exited {c.proc.returncode}:\n{c.output()[-3000:]}")
            counts = store.counts_by_state_priority()
            return not any(counts.get(str(s)) for s in (TaskState.QUEUED, TaskState.RUNNING, TaskState.RETRY_WAIT))

        try:
            wait_for(all_done, args_timeout, f"{n} tasks to succeed", interval_s=0.02)
        except AssertionError:
            print(f"store: {store.counts_by_state_priority()}", file=sys.stderr)
            for a in store.running_attempts():
                print(f"running: {a}", file=sys.stderr)
            for c in started:
                print(f"--- {c.log_path}\n{c.output()[-3000:]}", file=sys.stderr)
                for child in psutil.Process(c.pid).children(recursive=True):
                    print(f"child {child.pid} {child.status()} {child.cmdline()}", file=sys.stderr)
            raise
        e2e = time.perf_counter() - t0
        counts = store.counts_by_state_priority()
        if sum(counts.get(succeeded, {}).values()) != n:
            bad = [
                a for t in store.list_tasks(limit=10 * n) for a in store.attempts_for(t.id) if a.outcome != "success"
            ]
            raise AssertionError(f"not every task succeeded: {counts}; attempts that did not: {bad[:5]}")
        coord_cpu = worker_cpu = 0.0
        for c in started:
            t = psutil.Process(c.pid).cpu_times()
            coord_cpu += t.user + t.system
            worker_cpu += t.children_user + t.children_system
        for c in started:
            c.signal(signal.SIGTERM)
        for c in started:
            assert c.wait(60) == 0, c.output()[-2000:]
        errors = sum(1 for c in started for r in c.records() if r.get("level") in ("error", "warning", "critical"))
        attempts = [a for t in store.list_tasks(limit=10 * n) for a in store.attempts_for(t.id)]
    done = setup.log.done()
    assert len(done) == n and set(done.values()) == {1}, "a task ran twice or never on the worker side"
    assert len(attempts) == n
    first = min(a.started_at for a in attempts)
    last = max(a.ended_at for a in attempts if a.ended_at is not None)
    return Row(
        scenario=name,
        tasks=n,
        window_s=(last - first).total_seconds(),
        e2e_s=e2e,
        coord_cpu_s=coord_cpu,
        worker_cpu_s=worker_cpu,
        baseline_s=base,
        owners=len({a.owner for a in attempts}),
        errors=errors,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=300)
    ap.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated: " + ", ".join(SCENARIOS))
    ap.add_argument("--json", action="store_true", help="also print the rows as JSON")
    args = ap.parse_args()
    names = [s for s in args.only.split(",") if s]
    unknown = set(names) - set(SCENARIOS)
    if unknown:
        ap.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="adw-bench-") as tmp:
        for name in names:
            rows.append(scenario(name, args.tasks, Path(tmp) / name))
            print(f"  {name}: done", file=sys.stderr, flush=True)
    print(f"python {sys.version.split()[0]}, {psutil.cpu_count()} CPUs, {args.tasks} tasks per scenario, ")
    print(f"max_concurrency {CONCURRENCY} per coordinator; baseline = bare subprocess.run, pool of {CONCURRENCY}\n")
    head = (
        f"{'scenario':<10} {'coord':>5} {'tasks/s':>8} {'e2e/s':>7} {'ms/task':>8} {'base ms':>8} "
        f"{'ratio':>6} {'coord cpu ms/task':>18} {'worker cpu ms/task':>19} {'log errors':>10}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r.scenario:<10} {r.owners:>5} {r.tasks / r.window_s:>8.1f} {r.tasks / r.e2e_s:>7.1f} "
            f"{r.per_task_ms():>8.1f} {r.baseline_ms():>8.1f} {r.per_task_ms() / r.baseline_ms():>6.2f} "
            f"{r.coord_cpu_s / r.tasks * 1000:>18.1f} {r.worker_cpu_s / r.tasks * 1000:>19.1f} {r.errors:>10}"
        )
    print(
        "\ncoord = coordinators that ran attempts; tasks/s over the attempt window; e2e/s includes start-up;"
        "\nratio = coordinator wall ms per task / bare-spawn ms per task (measured just before the scenario)."
    )
    if args.json:
        print(json.dumps([r.__dict__ for r in rows], indent=1))


if __name__ == "__main__":
    main()
