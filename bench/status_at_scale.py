#!/usr/bin/env python3
"""``adw status`` and per-task coordinator CPU with 100,000 finished tasks in the store, vs an empty store.

Filling: a few tasks are run to success through the real service loop (so their rows,
attempts and events are what the code writes), then those rows are cloned with bulk inserts
(tables reflected from the database, so new columns come along) until the store holds
``--tasks`` finished tasks, each with its attempt and events.  On PostgreSQL the id
sequences are moved past the clones, and ANALYZE runs, as autovacuum would.

Measured, alternating full store / empty store (A B A B ...):

- ``adw status --config ...`` wall time (a child process; ``--rounds`` pairs);
- coordinator CPU and statements per trivial task: per_task_statements.py's child (the
  service loop in-process, ``--cpu-tasks`` tasks, ``--cpu-pairs`` pairs) on each store.

Leaves out: queued backlogs (every clone is finished), retention (``prune`` is not run),
and the other read commands (``adw tasks``, ``adw top``).

    .venv/bin/python bench/status_at_scale.py       # --tasks 100000 --backends sqlite,pg --rounds 5
"""

from __future__ import annotations

import argparse
import functools
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchlib
import per_task_statements as pts
import sqlalchemy as sa

from adw_modules.queue.store import Store
from tests.coordinator.harness import ADW

BATCH = 5000


store_url = benchlib.store_url


def seed(url: str, root: Path) -> None:
    """A few real finished tasks: the templates the clones copy."""
    argv = [sys.executable, pts.__file__, "--child", "run", "--root", str(root), "--url", url, "--tasks", "3"]
    benchlib.run_child(argv)


def fill(url: str, total: int) -> float:
    """Clone finished tasks (with their attempts and events) until the store holds ``total``; seconds taken."""
    t0 = time.perf_counter()
    engine = sa.create_engine(url)
    try:
        meta = sa.MetaData()
        meta.reflect(engine, only=["tasks", "attempts", "events"])
        tasks, attempts, events = (meta.tables[n] for n in ("tasks", "attempts", "events"))
        with engine.begin() as conn:
            template = dict(conn.execute(sa.select(tasks).where(tasks.c.state == "succeeded")).mappings().first() or {})
            assert template, "no succeeded task to clone"
            att = [
                dict(r)
                for r in conn.execute(sa.select(attempts).where(attempts.c.task_id == template["id"])).mappings()
            ]
            evs = [
                dict(r) for r in conn.execute(sa.select(events).where(events.c.task_id == template["id"])).mappings()
            ]
            have = conn.execute(sa.select(sa.func.count()).select_from(tasks)).scalar_one()
            next_task = conn.execute(sa.select(sa.func.max(tasks.c.id))).scalar_one() + 1
            next_att = (conn.execute(sa.select(sa.func.max(attempts.c.id))).scalar_one() or 0) + 1
        todo = total - have
        done = 0
        while done < todo:
            n = min(BATCH, todo - done)
            trows: list[dict[str, Any]] = []
            arows: list[dict[str, Any]] = []
            erows: list[dict[str, Any]] = []
            for k in range(n):
                tid = next_task + done + k
                ids = {a["id"]: next_att + (done + k) * len(att) + j for j, a in enumerate(att)}
                row = {**template, "id": tid, "external_id": f"bulk-{tid}", "title": f"bulk task {tid}"}
                if row.get("current_attempt_id") is not None:
                    row["current_attempt_id"] = ids.get(row["current_attempt_id"])
                trows.append(row)
                arows += [{**a, "id": ids[a["id"]], "task_id": tid} for a in att]
                for e in evs:
                    erows.append(
                        {
                            **{k2: v for k2, v in e.items() if k2 != "id"},
                            "task_id": tid,
                            "attempt_id": ids.get(e["attempt_id"]),
                        }
                    )
            with engine.begin() as conn:
                conn.execute(tasks.insert(), trows)
                if arows:
                    conn.execute(attempts.insert(), arows)
                if erows:
                    conn.execute(events.insert(), erows)
            done += n
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                for name in ("tasks", "attempts"):
                    conn.execute(
                        sa.text(f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), (SELECT max(id) FROM {name}))")
                    )
        if engine.dialect.name == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(sa.text("ANALYZE"))
    finally:
        engine.dispose()
    return time.perf_counter() - t0


def status_wall(config: Path, _round: int = 0) -> float:
    env = {k: v for k, v in os.environ.items() if k != "ADW_CONFIG"}
    t0 = time.perf_counter()
    subprocess.run([str(ADW), "status", "--config", str(config)], capture_output=True, env=env, check=True)
    return time.perf_counter() - t0


def cpu_child(url: str, parent: Path, tasks: int, round_: int) -> dict[str, Any]:
    root = parent / f"cpu{round_}"
    argv = [sys.executable, pts.__file__, "--child", "run", "--root", str(root), "--url", url, "--tasks", str(tasks)]
    return benchlib.run_child(argv)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=100_000)
    ap.add_argument("--backends", default="sqlite,pg")
    ap.add_argument("--rounds", type=int, default=5, help="adw status pairs (full, empty)")
    ap.add_argument("--cpu-tasks", type=int, default=60)
    ap.add_argument("--cpu-pairs", type=int, default=2)
    args = ap.parse_args()
    s = benchlib.spread
    rows = []
    figures = []
    with tempfile.TemporaryDirectory(prefix="adw-scale-") as tmp:
        for backend in [b for b in args.backends.split(",") if b]:
            base = Path(tmp) / backend
            (base / "full").mkdir(parents=True)
            (base / "empty").mkdir(parents=True)
            with store_url(backend, base / "full") as full, store_url(backend, base / "empty") as empty:
                seed(full, base / "full" / "seed")
                Store.open(empty).close()
                filled = fill(full, args.tasks)
                print(f"  {backend}: filled {args.tasks:,} tasks in {filled:.0f} s", file=sys.stderr, flush=True)
                argv, _ = benchlib.sh_worker_argv(base / "w")
                cfg_full = benchlib.write_config(base / "full", full, "status", argv)
                cfg_empty = benchlib.write_config(base / "empty", empty, "status", argv)
                status_wall(cfg_full)  # warm caches on both sides
                status_wall(cfg_empty)
                walls = benchlib.alternate(
                    args.rounds, functools.partial(status_wall, cfg_full), functools.partial(status_wall, cfg_empty)
                )
                cpus = benchlib.alternate(
                    args.cpu_pairs,
                    functools.partial(cpu_child, full, base / "full", args.cpu_tasks),
                    functools.partial(cpu_child, empty, base / "empty", args.cpu_tasks),
                )
            cpu_full = [pts.per_task(r, "cpu_s") * 1000 for r in cpus[0]]
            cpu_empty = [pts.per_task(r, "cpu_s") * 1000 for r in cpus[1]]
            ratio = [a / b for a, b in zip(cpu_full, cpu_empty, strict=True)]
            rows.append(
                (
                    backend,
                    s(walls[0], "{:.2f}"),
                    s(walls[1], "{:.2f}"),
                    s(cpu_full, "{:.1f}"),
                    s(cpu_empty, "{:.1f}"),
                    s(ratio, "{:.2f}"),
                    s([pts.per_task(r, "statements") for r in cpus[0]], "{:.1f}"),
                )
            )
            figures.append(f"FIGURE {backend} status_wall_s_at_{args.tasks} {benchlib.median(walls[0]):.2f}")
            figures.append(f"FIGURE {backend} cpu_per_task_full_over_empty {benchlib.median(ratio):.2f}")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {args.tasks:,} finished tasks; median (min-max)\n")
    heads = ["backend", "adw status s (full)", "adw status s (empty)", "CPU ms/task (full)", "CPU ms/task (empty)"]
    print(benchlib.table([*heads, "full / empty", "statements/task (full)"], rows))
    print("\n".join(figures))


if __name__ == "__main__":
    main()
