"""What an idle ``adw run`` costs: CPU, RSS and wake-ups of every thread, next to an idle Python process.

Measured side by side over the same window: an ``adw run`` on SQLite, one on PostgreSQL (a
scratch database; skip with ``--no-pg``), both with CoordinatorConfig's default timings and
nothing to do, and the baseline ``python -c 'import time; time.sleep(...)'``.  The window
opens once each coordinator has logged ``service.started`` (start-up is not idle cost) and is
cut into ``--slices`` equal slices; each figure is the median (min-max) over the slices.

Every figure is read from the measured process itself: CPU from psutil ``cpu_times`` of that
pid (all its threads, 10 ms tick resolution: use windows of 60 s or more), RSS from its
``memory_info`` (sampled every second; peak also from its VmHWM), and wake-ups from
``/proc/PID/task/*/status``: voluntary context switches of every thread, summed, and those of
the busiest thread alone (with its name).  psutil's ``num_ctx_switches()`` reads the main
thread's line only, which is why it is not used.

    .venv/bin/python bench/idle_cost.py [--seconds 60] [--slices 6] [--no-pg]
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import benchlib
import psutil

from adw_modules.config.service import CoordinatorConfig
from adw_modules.queue.store import Store
from tests.coordinator.harness import Coord, Setup, coordinators, scratch_pg_database


@dataclass
class Sample:
    cpu_s: float
    threads: dict[int, benchlib.ThreadSwitches]
    at: float


def sample(p: psutil.Process) -> Sample:
    t = p.cpu_times()
    return Sample(t.user + t.system, benchlib.thread_switches(p.pid), time.monotonic())


@dataclass
class Slice:
    cpu_ms_per_s: float
    wakeups_per_s: float  # all threads
    busiest_per_s: float
    busiest: str
    threads: int


def slice_of(a: Sample, b: Sample) -> Slice:
    wall = b.at - a.at
    per_thread = {}
    for tid, t in b.threads.items():
        before = a.threads.get(tid)
        per_thread[tid] = (t.voluntary - (before.voluntary if before else 0), t.name)
    total = sum(v for v, _ in per_thread.values())
    top_tid = max(per_thread, key=lambda k: per_thread[k][0]) if per_thread else 0
    top, name = per_thread.get(top_tid, (0, "-"))
    return Slice((b.cpu_s - a.cpu_s) / wall * 1000, total / wall, top / wall, f"{name}({top_tid})", len(b.threads))


def vm_hwm_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@contextlib.contextmanager
def pg_url(enabled: bool) -> Iterator[str | None]:
    if not enabled:
        yield None
        return
    with scratch_pg_database() as url:
        yield url


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--slices", type=int, default=6)
    ap.add_argument("--no-pg", action="store_true", help="only the SQLite coordinator")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="adw-idle-") as tmp, pg_url(not args.no_pg) as pg, coordinators() as run:
        root = Path(tmp)
        procs: dict[str, psutil.Process] = {}
        stores = {"adw run (SQLite)": f"sqlite:///{root / 'adw.db'}"}
        if pg is not None:
            stores["adw run (PostgreSQL)"] = pg
        for i, (label, url) in enumerate(stores.items()):
            Store.open(url).close()  # migrate before the window
            setup = Setup(root / f"s{i}", url)
            # CoordinatorConfig's default timings (Setup.config otherwise uses the tests' fast ones).
            d = CoordinatorConfig()
            timings = ("max_concurrency", "heartbeat_s", "lease_s", "dispatch_interval_s", "reap_interval_s")
            cfg = setup.config(f"idle{i}", **{k: getattr(d, k) for k in timings if hasattr(d, k)})
            c = Coord(cfg)
            run.append(c)
            procs[label] = psutil.Process(c.pid)
        for c in run:
            c.wait_event("service.started", timeout_s=60)
        sleeper = subprocess.Popen(
            [sys.executable, "-c", f"import time; time.sleep({args.seconds + 30})"], stdin=subprocess.DEVNULL
        )
        slices: dict[str, list[Slice]] = {k: [] for k in [*procs, "baseline: python -c 'time.sleep()'"]}
        try:
            procs["baseline: python -c 'time.sleep()'"] = psutil.Process(sleeper.pid)
            time.sleep(0.5)  # let the sleeper finish starting; its start-up is not idle cost
            rss: dict[str, list[float]] = {k: [] for k in procs}
            prev = {k: sample(p) for k, p in procs.items()}
            step = args.seconds / args.slices
            for _ in range(args.slices):
                end = time.monotonic() + step
                while (now := time.monotonic()) < end:
                    time.sleep(min(1.0, end - now))
                    for k, p in procs.items():
                        rss[k].append(p.memory_info().rss / 2**20)
                cur = {k: sample(p) for k, p in procs.items()}
                for k in procs:
                    slices[k].append(slice_of(prev[k], cur[k]))
                prev = cur
            hwm = {k: vm_hwm_mib(p.pid) for k, p in procs.items()}
        finally:
            sleeper.kill()
            sleeper.wait()
        for c in run:
            c.signal(signal.SIGTERM)
        codes = [c.wait(60) for c in run]
        assert codes == [0] * len(run), codes

    s = benchlib.spread
    print(f"python {sys.version.split()[0]}, {psutil.cpu_count()} CPUs, idle window {args.seconds:g} s")
    print(f"in {args.slices} slices of {args.seconds / args.slices:g} s: median (min-max) over the slices\n")
    rows = []
    for k, sl in slices.items():
        busiest = max({x.busiest for x in sl}, key=[x.busiest for x in sl].count) if sl else "-"
        rows.append(
            (
                k,
                s([x.cpu_ms_per_s / 10 for x in sl], "{:.2f}"),
                s([x.cpu_ms_per_s for x in sl], "{:.2f}"),
                s(rss[k]),
                f"{hwm[k]:.1f}",
                max(x.threads for x in sl),
                s([x.wakeups_per_s for x in sl]),
                s([x.busiest_per_s for x in sl]),
                busiest,
            )
        )
    heads = ["process", "CPU %", "CPU ms/s", "RSS MiB", "peak MiB", "threads", "wake-ups/s (all threads)"]
    print(benchlib.table([*heads, "busiest thread wake-ups/s", "busiest thread"], rows))
    for k, sl in slices.items():
        if k.startswith("adw run"):
            tag = "sqlite" if "SQLite" in k else "pg"
            print(f"FIGURE {tag} idle_rss_mib {benchlib.median(rss[k]):.1f}")
            print(f"FIGURE {tag} idle_wakeups_per_s_all_threads {benchlib.median([x.wakeups_per_s for x in sl]):.1f}")
            print(
                f"FIGURE {tag} idle_busiest_thread_wakeups_per_s {benchlib.median([x.busiest_per_s for x in sl]):.1f}"
            )


if __name__ == "__main__":
    main()
