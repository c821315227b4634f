#!/usr/bin/env python3
"""Pick-up latency: a task enqueued from another process -> its worker started, on SQLite and PostgreSQL.

One ``adw run`` (forever mode, CoordinatorConfig's default timings: the dispatch tick is the
safety net) runs idle on a fresh store.  Then, one at a time, a task is enqueued from another
process, either through the store (``--via store``: this script's own ``enqueue_local``) or
with ``adw enqueue`` (``--via cli``, the path scripts use), and the latency is

    worker's own start timestamp - the task's ``created_at`` in the store

(the worker is ``/bin/sh`` writing ``start <task_id> $(date +%s.%N)`` to a file first; the
``date`` process adds ~1 ms).  Between samples the script waits a random 0..dispatch_interval
so enqueues land at random phases of the dispatch tick.

Baseline, alternated with the samples (A B A B ...): this script spawning the same worker
itself (``subprocess.Popen``), from the call to the worker's start timestamp: the floor.

Leaves out: GitHub intake (polled on its own timer), several coordinators competing for
one task, and ``adw enqueue``'s own start-up (with ``--via cli`` the clock starts at
``created_at``, which that process writes once it has started).

    .venv/bin/python bench/pickup_latency.py        # --samples 10 --via store,cli --backends sqlite,pg
"""

from __future__ import annotations

import argparse
import functools
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchlib

from adw_modules.queue.store import Store
from adw_modules.sources.local import enqueue_local
from tests.coordinator.harness import ADW, Coord, coordinators, wait_for


def worker(root: Path) -> tuple[list[str], Path]:
    root.mkdir(parents=True, exist_ok=True)
    result = root / "result.jsonl"
    result.write_text(benchlib.RESULT_LINE + "\n")
    log = root / "starts.log"
    script = f'echo "start $1 $(date +%s.%N)" >> {log}; cat {result}'
    return ["/bin/sh", "-c", script, "sh", "{task_id}"], log


def start_time(log: Path, task_id: int) -> float | None:
    if not log.exists():
        return None
    for line in log.read_text().splitlines():
        _, task, at = line.split()
        if int(task) == task_id:
            return float(at)
    return None


store_url = benchlib.store_url


def enqueue(via: str, store: Store, config: Path, title: str) -> int:
    if via == "store":
        return enqueue_local(store, title).id
    env = {k: v for k, v in os.environ.items() if k != "ADW_CONFIG"}
    done = subprocess.run(
        [str(ADW), "enqueue", title, "--config", str(config)], capture_output=True, text=True, env=env, check=True
    )
    task = next((t for t in store.list_tasks(limit=1000) if t.title == title), None)
    assert task is not None, done.stdout
    return task.id


def measure(backend: str, via: str, samples: int, root: Path, rng: random.Random) -> tuple[list[float], list[float]]:
    """(pick-up latencies, bare-spawn latencies) in seconds."""
    argv, log = worker(root / "w")
    bare_argv, bare_log = worker(root / "bare")
    with store_url(backend, root) as url, Store.open(url) as store, coordinators() as run:
        config = benchlib.write_config(root, url, "pickup", argv)
        tick = float(benchlib.default_timings().get("dispatch_interval_s", 2.0))
        run.append(Coord(config))
        run[0].wait_event("service.started", timeout_s=60)
        time.sleep(tick)  # past the first passes after start-up
        lat: list[float] = []
        bare: list[float] = []
        for i in range(samples):
            task_id = enqueue(via, store, config, f"pickup {via} {i}")
            started = wait_for(
                functools.partial(start_time, log, task_id), 30, f"task {task_id} to start", interval_s=0.01
            )
            task = store.get_task(task_id)
            assert task is not None
            lat.append(started - task.created_at.timestamp())
            t0 = time.time()
            cmd = [p.replace("{task_id}", str(i)) for p in bare_argv]
            subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, check=True)
            at = start_time(bare_log, i)
            assert at is not None
            bare.append(at - t0)
            time.sleep(rng.uniform(0, tick))
        run[0].signal(signal.SIGTERM)
        assert run[0].wait(60) == 0, run[0].output()[-2000:]
    return lat, bare


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=10, help="per backend and way of enqueueing")
    ap.add_argument("--via", default="store,cli", help="store, cli or both")
    ap.add_argument("--backends", default="sqlite,pg")
    args = ap.parse_args()
    rng = random.Random(13)
    rows = []
    figures = []
    s = benchlib.spread
    with tempfile.TemporaryDirectory(prefix="adw-pickup-") as tmp:
        for backend in [b for b in args.backends.split(",") if b]:
            for via in [v for v in args.via.split(",") if v]:
                lat, bare = measure(backend, via, args.samples, Path(tmp) / f"{backend}-{via}", rng)
                ms = [x * 1000 for x in lat]
                rows.append((f"{backend}, via {via}", s(ms, "{:.0f}"), f"{max(ms):.0f}", s([x * 1000 for x in bare])))
                figures.append(f"FIGURE {backend} via_{via} pickup_median_s {benchlib.median(lat):.3f}")
                print(f"  {backend} via {via}: done", file=sys.stderr, flush=True)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {args.samples} samples each; median (min-max)\n")
    heads = ["backend, enqueue", "enqueue -> worker started ms", "max ms", "bare spawn -> started ms"]
    print(benchlib.table(heads, rows))
    print("\n".join(figures))


if __name__ == "__main__":
    main()
