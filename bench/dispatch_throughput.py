"""End-to-end dispatch throughput of ``adw run`` with a trivial worker, against bare spawning.

Scenarios: 1 coordinator on SQLite, and 1, 2, 4 coordinators on one PostgreSQL database;
each coordinator has ``max_concurrency`` 4, CoordinatorConfig's default timings, and runs in its
own ``adw run`` process.  N tasks are enqueued first.  The worker (``--worker sh``, default) is
a ~1 ms ``/bin/sh`` that appends ``done <task_id> <pid>`` to a file and prints a Claude-style
result line (``--worker python``: tests/coordinator/worker.py under ``python -I -S``, ~10-30 ms).

Runs alternate: for each round, for each scenario, the baseline (the same worker argv spawned
N times with bare ``subprocess.run`` from a pool of 4 threads) and then the scenario, so both
see the same machine load.  Each scenario's ratio is taken against the baseline run just
before it; medians and ranges (min-max) over the rounds are reported:

- tasks/s over the attempt window (first attempt start -> last attempt end, from the store)
  and end to end (the first enqueue -> every task done; the coordinators are started and idle first,
  so neither figure includes their start-up);
- wall ms per task and its ratio to the baseline's ms per task;
- the coordinators' own CPU ms per task (psutil on each coordinator pid, children excluded)
  and their peak RSS (VmHWM of each coordinator process) next to the workers' CPU.

Every run also checks that each task ran exactly once on the worker side.

    .venv/bin/python bench/dispatch_throughput.py [--tasks 200] [--rounds 3] [--only sqlite-1,pg-1,pg-2,pg-4]

PostgreSQL: ADW_TEST_PG_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/postgres);
a scratch database is created per run and dropped afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import benchlib
import psutil

from adw_modules.queue.store import Store
from adw_modules.queue.tasks import TaskState
from adw_modules.sources.local import enqueue_local
from tests.coordinator.harness import Coord, coordinators, scratch_pg_database, wait_for

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
    peak_rss_mib: float
    owners: int
    errors: int

    def per_task_ms(self) -> float:
        return self.window_s / self.tasks * 1000

    def baseline_ms(self) -> float:
        return self.baseline_s / self.tasks * 1000

    def ratio(self) -> float:
        return self.per_task_ms() / self.baseline_ms()


def vm_hwm_mib(pid: int) -> float:
    """Peak RSS of that process (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@contextlib.contextmanager
def store_url(kind: str, root: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{root / 'adw.db'}"
    else:
        with scratch_pg_database() as url:
            yield url


def report_stuck(store: Store, started: list[Coord]) -> None:
    print(f"store: {store.counts_by_state_priority()}", file=sys.stderr)
    for a in store.running_attempts():
        print(f"running: {a}", file=sys.stderr)
    for c in started:
        print(f"--- {c.log_path}\n{c.output()[-3000:]}", file=sys.stderr)
        for child in psutil.Process(c.pid).children(recursive=True):
            print(f"child {child.pid} {child.status()} {child.cmdline()}", file=sys.stderr)


def scenario(name: str, n: int, root: Path, worker: str, base: float, timeout_s: float = 300) -> Row:
    kind, count = SCENARIOS[name]
    root.mkdir(parents=True, exist_ok=True)
    argv, log = benchlib.worker_argv(worker, root / "w")
    with store_url(kind, root) as url, Store.open(url) as store, coordinators() as started:
        configs = [benchlib.write_config(root, url, f"c{i}", argv, max_concurrency=CONCURRENCY) for i in range(count)]
        started += [Coord(cfg) for cfg in configs]
        for c in started:  # start-up (imports, migrations check) is not per-task cost
            c.wait_event("service.started", timeout_s=60)
        cpu0 = {c.pid: sum(psutil.Process(c.pid).cpu_times()[:2]) for c in started}
        t0 = time.perf_counter()
        for i in range(n):
            enqueue_local(store, f"task {i}")

        def all_done() -> bool:
            for c in started:
                if c.proc.poll() is not None:
                    raise AssertionError(f"{c.config} exited {c.proc.returncode}:\n{c.output()[-3000:]}")
            counts = store.counts_by_state_priority()
            return not any(counts.get(str(s)) for s in (TaskState.QUEUED, TaskState.RUNNING, TaskState.RETRY_WAIT))

        try:
            wait_for(all_done, timeout_s, f"{n} tasks to succeed", interval_s=0.02)
        except AssertionError:
            report_stuck(store, started)
            raise
        e2e = time.perf_counter() - t0
        counts = store.counts_by_state_priority()
        if sum(counts.get(str(TaskState.SUCCEEDED), {}).values()) != n:
            raise AssertionError(f"not every task succeeded: {counts}")
        coord_cpu = worker_cpu = 0.0
        peak = 0.0
        for c in started:
            p = psutil.Process(c.pid)
            t = p.cpu_times()
            coord_cpu += t.user + t.system - cpu0[c.pid]
            worker_cpu += t.children_user + t.children_system
            peak = max(peak, vm_hwm_mib(c.pid))
        for c in started:
            c.signal(signal.SIGTERM)
        for c in started:
            assert c.wait(60) == 0, c.output()[-2000:]
        errors = sum(1 for c in started for r in c.records() if r.get("level") in ("error", "warning", "critical"))
        attempts = [a for t in store.list_tasks(limit=10 * n) for a in store.attempts_for(t.id)]
    done = benchlib.done_counts(log)
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
        peak_rss_mib=peak,
        owners=len({a.owner for a in attempts}),
        errors=errors,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3, help="baseline/scenario pairs per scenario")
    ap.add_argument("--only", default="sqlite-1,pg-1", help="comma-separated: " + ", ".join(SCENARIOS))
    ap.add_argument("--worker", choices=("sh", "python"), default="sh")
    ap.add_argument("--json", action="store_true", help="also print the rows as JSON")
    args = ap.parse_args()
    names = [s for s in args.only.split(",") if s]
    unknown = set(names) - set(SCENARIOS)
    if unknown:
        ap.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    rows: dict[str, list[Row]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="adw-bench-") as tmp:
        for r in range(args.rounds):
            for name in names:
                root = Path(tmp) / f"{name}-{r}"
                argv, _ = benchlib.worker_argv(args.worker, root / "bare")
                base = benchlib.bare_spawns(argv, args.tasks, CONCURRENCY)
                rows[name].append(scenario(name, args.tasks, root, args.worker, base))
                print(f"  round {r + 1} {name}: done", file=sys.stderr, flush=True)
    print(
        f"python {sys.version.split()[0]}, {psutil.cpu_count()} CPUs, {args.tasks} tasks per run, worker {args.worker}"
    )
    print(f"max_concurrency {CONCURRENCY} per coordinator; baseline = bare subprocess.run, pool of {CONCURRENCY};")
    print(f"{args.rounds} rounds of (baseline, scenario); median (min-max) over the rounds\n")
    s = benchlib.spread
    out = []
    for name, rs in rows.items():
        out.append(
            (
                name,
                max(r.owners for r in rs),
                s([r.tasks / r.window_s for r in rs]),
                s([r.tasks / r.e2e_s for r in rs]),
                s([r.per_task_ms() for r in rs], "{:.2f}"),
                s([r.baseline_ms() for r in rs], "{:.2f}"),
                s([r.ratio() for r in rs]),
                s([r.coord_cpu_s / r.tasks * 1000 for r in rs]),
                s([r.worker_cpu_s / r.tasks * 1000 for r in rs]),
                s([r.peak_rss_mib for r in rs], "{:.0f}"),
                sum(r.errors for r in rs),
            )
        )
    heads = ["scenario", "coord", "tasks/s", "e2e/s", "ms/task", "bare ms/task", "ratio", "coord CPU ms/task"]
    print(benchlib.table([*heads, "worker CPU ms/task", "coord peak RSS MiB", "log errors"], out))
    print(
        "\ncoord = coordinators that ran attempts; tasks/s over the attempt window;"
        "\ne2e/s from the first enqueue (coordinators already up);"
        "\nratio = coordinator wall ms per task / bare-spawn ms per task (of the baseline run just before)."
    )
    for name, rs in rows.items():
        print(f"FIGURE {name} ratio_to_bare_spawns {benchlib.median([r.ratio() for r in rs]):.1f}")
        cpu = benchlib.median([r.coord_cpu_s / r.tasks * 1000 for r in rs])
        print(f"FIGURE {name} coordinator_cpu_ms_per_task {cpu:.1f}")
    if args.json:
        print(json.dumps({k: [r.__dict__ for r in v] for k, v in rows.items()}, indent=1))


if __name__ == "__main__":
    main()
