#!/usr/bin/env python3
"""SQL statements, transactions and coordinator CPU per trivial task, on SQLite and PostgreSQL.

Each measured run is a fresh child process that runs the real service loop in-process
(``adws.service.Service(config).run("until_idle", idle_wait_s=0)``, what ``adw run
--until-idle`` runs) over a fresh store: a SQLite file in a temp dir, or a scratch PostgreSQL
database.  The worker is a ~1 ms ``/bin/sh`` (``--worker python`` for tests/coordinator/worker.py).
Inside the child, SQLAlchemy engine events, registered on the ``Engine`` class (so on whatever
engine the store builds), count:

- statements: ``before_cursor_execute`` (on SQLite the store's ``BEGIN IMMEDIATE``/``BEGIN`` is
  sent with ``exec_driver_sql`` and shows there; it is also reported alone as BEGIN; psycopg
  sends PostgreSQL's BEGIN itself, so it is not a statement here);
- transactions: the engine's ``begin`` events (and ``commit`` / ``rollback``).

The child runs three service loops in one process: a warm-up (5 tasks: imports, compiled
statement cache, first connections), an empty run (0 tasks: start-up, one pass, idle check,
shutdown) and the measured run (N tasks).  Per task = (measured - empty) / N, so start-up and
shutdown are taken out, while what the loop does per pass, per finished attempt and on its
timers (dispatch, idle checks, heartbeat, reap at CoordinatorConfig's default intervals)
while the N tasks run stays in.  CPU is the child's own (getrusage RUSAGE_SELF: all its
threads, the workers excluded).

Baseline, alternated with the coordinator runs (A B A B ...): a child that spawns the same
worker N times with bare ``subprocess.run`` from 4 threads, its own CPU per task: what starting
a process costs the parent, the floor of any coordinator.

One more child per backend (``--no-breakdown`` skips it) walks the Python stack on every
statement and transaction to attribute it to (loop job, store method), with statement
shapes (first words and table), so the hot spots show; that walk costs CPU, so those runs
are not the CPU figures.

    .venv/bin/python bench/per_task_statements.py            # --tasks 100 --pairs 5 --backends sqlite,pg
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchlib

REPO = benchlib.REPO
PKG_DIRS = (str(REPO / "adw_modules"), str(REPO / "adws"))
STORE_DIR = str(REPO / "adw_modules" / "queue" / "store")
WARMUP_TASKS = 5

# ---------------------------------------------------------------- inside the child


class Counter:
    """Counts statements and transactions from engine events; optionally attributes each one."""

    def __init__(self, attribute: bool) -> None:
        self.attribute = attribute
        self.on = False
        self.statements = 0
        self.begin_statements = 0
        self.begins = 0
        self.commits = 0
        self.rollbacks = 0
        self.by_site: collections.Counter[tuple[str, str, str]] = collections.Counter()
        self.tx_by_site: collections.Counter[tuple[str, str]] = collections.Counter()

    def install(self) -> None:
        import sqlalchemy as sa

        sa.event.listen(sa.engine.Engine, "before_cursor_execute", self._statement)
        sa.event.listen(sa.engine.Engine, "begin", self._begin)
        sa.event.listen(sa.engine.Engine, "commit", self._commit)
        sa.event.listen(sa.engine.Engine, "rollback", self._rollback)

    def snapshot(self) -> dict[str, Any]:
        return {
            "statements": self.statements,
            "begin_statements": self.begin_statements,
            "transactions": self.begins,
            "commits": self.commits,
            "rollbacks": self.rollbacks,
            "by_site": {"|".join(k): v for k, v in self.by_site.items()},
            "tx_by_site": {"|".join(k): v for k, v in self.tx_by_site.items()},
        }

    def reset(self) -> None:
        self.__init__(self.attribute)  # type: ignore[misc]

    def _statement(self, conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        if not self.on:
            return
        self.statements += 1
        is_begin = statement.lstrip().upper().startswith("BEGIN")
        self.begin_statements += is_begin
        if self.attribute:
            job, method = site()
            self.by_site[(job, method, "BEGIN" if is_begin else shape(statement))] += 1

    def _begin(self, conn: Any) -> None:
        if self.on:
            self.begins += 1
            if self.attribute:
                self.tx_by_site[site()] += 1

    def _commit(self, conn: Any) -> None:
        self.commits += self.on

    def _rollback(self, conn: Any) -> None:
        self.rollbacks += self.on


def site() -> tuple[str, str]:
    """(the outermost adw frame: the loop job or thread, the outermost store method) of this call."""
    frame = sys._getframe(2)
    job = method = "?"
    while frame is not None:
        name = frame.f_code.co_filename
        if name.startswith(PKG_DIRS):
            qual = frame.f_code.co_qualname
            if name.startswith(STORE_DIR):
                if "<locals>" not in qual:  # not the retry wrapper: the method it wraps
                    method = qual
            else:
                job = qual
        frame = frame.f_back  # type: ignore[assignment]
    return job, method


_SHAPE = re.compile(r"^\s*(SELECT|INSERT INTO|UPDATE|DELETE FROM|WITH)\b", re.I)
_FROM = re.compile(r"\bFROM\s+\"?(\w+)", re.I)
_TABLE = re.compile(r"^\s*(?:INSERT INTO|UPDATE|DELETE FROM)\s+\"?(\w+)", re.I)


def shape(statement: str) -> str:
    """First words and table: ``SELECT tasks``, ``UPDATE attempts``, ``INSERT INTO events``."""
    m = _SHAPE.match(statement)
    if m is None:
        return " ".join(statement.split()[:2])[:40]
    verb = m.group(1).upper()
    t = _TABLE.match(statement) if verb != "SELECT" and verb != "WITH" else _FROM.search(statement)
    return f"{verb} {t.group(1) if t else '?'}"


def child_run(args: argparse.Namespace) -> dict[str, Any]:
    """One child: warm-up, empty and measured service loops on one store; counts and CPU."""
    from adw_modules.config.schema import load_config
    from adw_modules.queue.store import Store
    from adw_modules.sources.local import enqueue_local
    from adws.service import Service

    root = Path(args.root)
    argv, log = benchlib.worker_argv(args.worker, root / "w")
    config_path = benchlib.write_config(root, args.url, "bench", argv, max_concurrency=args.concurrency)
    counter = Counter(args.attribute)
    counter.install()
    environ = {k: v for k, v in os.environ.items() if k != "ADW_CONFIG"}
    out: dict[str, Any] = {}
    with Store.open(args.url) as store:
        for phase, n in (("warmup", WARMUP_TASKS), ("empty", 0), ("measured", args.tasks)):
            for i in range(n):
                enqueue_local(store, f"{phase} {i}")
            service = Service(load_config(config_path), environ=environ)  # opens its store: not measured
            counter.reset()
            counter.on = True
            cpu0, t0 = benchlib.own_cpu_s(), time.perf_counter()
            service.run("until_idle", idle_wait_s=0)
            cpu, wall = benchlib.own_cpu_s() - cpu0, time.perf_counter() - t0
            counter.on = False
            out[phase] = {"tasks": n, "cpu_s": cpu, "wall_s": wall, **counter.snapshot()}
    runs = benchlib.done_counts(log)
    total = WARMUP_TASKS + args.tasks
    if len(runs) != total or set(runs.values()) != {1}:
        raise SystemExit(f"expected {total} tasks run once each, worker log has {len(runs)} ({set(runs.values())})")
    out["peak_rss_mib"] = benchlib.peak_rss_mib()
    return out


def child_bare(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(args.root)
    argv, _ = benchlib.worker_argv(args.worker, root / "w")
    cpu0 = benchlib.own_cpu_s()
    wall = benchlib.bare_spawns(argv, args.tasks, args.concurrency)
    return {"tasks": args.tasks, "cpu_s": benchlib.own_cpu_s() - cpu0, "wall_s": wall}


# ---------------------------------------------------------------- parent


store_url = benchlib.store_url


def spawn(kind: str, backend: str, args: argparse.Namespace, tmp: Path, tag: str, attribute: bool = False) -> Any:
    root = tmp / tag
    root.mkdir(parents=True)
    with store_url(backend, root) if kind == "run" else contextlib.nullcontext("-") as url:
        argv = [sys.executable, __file__, "--child", kind, "--root", str(root), "--url", url]
        argv += ["--tasks", str(args.tasks), "--worker", args.worker, "--concurrency", str(args.concurrency)]
        if attribute:
            argv.append("--attribute")
        return benchlib.run_child(argv)


def per_task(run: dict[str, Any], key: str) -> float:
    m, e = run["measured"], run["empty"]
    return (m[key] - e[key]) / m["tasks"]


def breakdown(run: dict[str, Any], key: str) -> dict[str, float]:
    m, e = run["measured"][key], run["empty"][key]
    n = run["measured"]["tasks"]
    return {k: (m.get(k, 0) - e.get(k, 0)) / n for k in m.keys() | e.keys()}


def print_backend(
    backend: str, coord: list[dict[str, Any]], bare: list[dict[str, Any]], args: argparse.Namespace
) -> None:
    s = benchlib.spread
    cpu = [per_task(r, "cpu_s") * 1000 for r in coord]
    stmts = [per_task(r, "statements") for r in coord]
    begins = [per_task(r, "begin_statements") for r in coord]
    txs = [per_task(r, "transactions") for r in coord]
    wall = [r["measured"]["wall_s"] for r in coord]
    bare_cpu = [r["cpu_s"] / r["tasks"] * 1000 for r in bare]
    rows = [
        ("coordinator CPU ms/task", s(cpu, "{:.2f}")),
        ("bare-spawn parent CPU ms/task (baseline)", s(bare_cpu, "{:.2f}")),
        ("coordinator CPU / bare CPU", s([a / b for a, b in zip(cpu, bare_cpu, strict=True)], "{:.1f}")),
        ("statements/task (incl. BEGIN)", s(stmts, "{:.2f}")),
        ("  of them BEGIN statements", s(begins, "{:.2f}")),
        ("transactions/task (engine begin events)", s(txs, "{:.2f}")),
        (f"wall s for {args.tasks} tasks (measured run)", s(wall, "{:.2f}")),
        ("child peak RSS MiB", s([r["peak_rss_mib"] for r in coord], "{:.0f}")),
    ]
    print(f"\n== {backend}: {args.tasks} tasks, {args.pairs} pairs (median (min-max)), worker {args.worker}")
    print(benchlib.table(["figure", "value"], rows))
    print(f"FIGURE {backend} coordinator_cpu_ms_per_task {benchlib.median(cpu):.2f}")
    print(f"FIGURE {backend} statements_per_task {benchlib.median(stmts):.2f}")
    print(f"FIGURE {backend} begin_statements_per_task {benchlib.median(begins):.2f}")
    print(f"FIGURE {backend} transactions_per_task {benchlib.median(txs):.2f}")


def print_breakdown(backend: str, run: dict[str, Any]) -> None:
    stmts = breakdown(run, "by_site")
    txs = breakdown(run, "tx_by_site")
    by_job: dict[str, float] = collections.defaultdict(float)
    for k, v in stmts.items():
        by_job[k.split("|")[0]] += v
    print(f"\n-- {backend}: statements per task by loop job / thread entry (outermost adw frame)")
    print(
        benchlib.table(
            ["job", "statements/task"],
            [(j, f"{v:.2f}") for j, v in sorted(by_job.items(), key=lambda kv: -kv[1]) if abs(v) > 0.005],
        )
    )
    per_method: dict[tuple[str, str], float] = collections.defaultdict(float)
    for k, v in stmts.items():
        job, method, _ = k.split("|")
        per_method[(job, method)] += v
    rows = []
    for (job, method), v in sorted(per_method.items(), key=lambda kv: -kv[1]):
        if abs(v) < 0.005:
            continue
        shapes = collections.Counter({k.split("|")[2]: c for k, c in stmts.items() if k.startswith(f"{job}|{method}|")})
        shown = ", ".join(f"{sh} {c:.2f}" for sh, c in shapes.most_common() if abs(c) > 0.005)
        rows.append((f"{job} -> {method}", f"{v:.2f}", f"{txs.get(f'{job}|{method}', 0.0):.2f}", shown))
    print(f"\n-- {backend}: per task, by (job -> store method), with statement shapes")
    print(benchlib.table(["job -> store method", "stmts", "txs", "shapes"], rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=100)
    ap.add_argument("--pairs", type=int, default=5, help="coordinator/baseline pairs per backend")
    ap.add_argument("--backends", default="sqlite,pg")
    ap.add_argument("--worker", choices=("sh", "python"), default="sh")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--no-breakdown", action="store_true")
    ap.add_argument("--json", action="store_true", help="also print every child's report as JSON")
    ap.add_argument("--child", choices=("run", "bare"), help=argparse.SUPPRESS)
    ap.add_argument("--root", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--attribute", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child_run(args) if args.child == "run" else child_bare(args)))
        return
    backends = [b for b in args.backends.split(",") if b]
    reports: dict[str, Any] = {}
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="adw-stmts-") as tmp_s:
        tmp = Path(tmp_s)
        for backend in backends:
            coord, bare = benchlib.alternate(
                args.pairs,
                lambda i, b=backend: spawn("run", b, args, tmp, f"{b}-run{i}"),  # type: ignore[misc]
                lambda i, b=backend: spawn("bare", b, args, tmp, f"{b}-bare{i}"),  # type: ignore[misc]
            )
            print_backend(backend, coord, bare, args)
            reports[backend] = {"coordinator": coord, "bare": bare}
            if not args.no_breakdown:
                detail = spawn("run", backend, args, tmp, f"{backend}-attr", attribute=True)
                print_breakdown(backend, detail)
                reports[backend]["breakdown"] = detail
            sys.stdout.flush()
    if args.json:
        print(json.dumps(reports, indent=1))


if __name__ == "__main__":
    main()
