"""What an idle ``adw run`` costs: CPU% and RSS over a window, next to an idle Python process.

Measured side by side over the same window (psutil): an ``adw run`` on SQLite, one on
PostgreSQL (a scratch database; skip with ``--no-pg``), both with the default
[coordinator] timings (dispatch every 2 s, heartbeat 10 s, reap 15 s) and nothing to do,
and the baseline ``python -c 'import time; time.sleep(...)'`` for scale.  The window
opens once each coordinator has logged ``service.started`` (start-up is not idle cost).

    .venv/bin/python bench/idle_cost.py [--seconds 60] [--no-pg]

Reported: CPU% of one core (user+system over the window), RSS at the end and its peak
(sampled every second), threads, and voluntary context switches per second (wake-ups).
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

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import psutil  # noqa: E402

from adw_modules.config.service import CoordinatorConfig  # noqa: E402
from adw_modules.queue.store import Store  # noqa: E402
from tests.coordinator.harness import Coord, Setup, coordinators, scratch_pg_database  # noqa: E402


@dataclass
class Sample:
    cpu_s: float
    ctx: int
    at: float


def sample(p: psutil.Process) -> Sample:
    t = p.cpu_times()
    return Sample(t.user + t.system, p.num_ctx_switches().voluntary, time.monotonic())


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
            cfg = setup.config(f"idle{i}", **{k: getattr(d, k) for k in timings})
            c = Coord(cfg)
            run.append(c)
            procs[label] = psutil.Process(c.pid)
        for c in run:
            c.wait_event("service.started", timeout_s=60)
        sleeper = subprocess.Popen(
            [sys.executable, "-c", f"import time; time.sleep({args.seconds + 30})"], stdin=subprocess.DEVNULL
        )
        try:
            procs["baseline: python -c 'time.sleep()'"] = psutil.Process(sleeper.pid)
            time.sleep(0.5)  # let the sleeper finish starting; its start-up is not idle cost
            first = {k: sample(p) for k, p in procs.items()}
            peak = {k: p.memory_info().rss for k, p in procs.items()}
            end = time.monotonic() + args.seconds
            while (now := time.monotonic()) < end:
                time.sleep(min(1.0, end - now))
                for k, p in procs.items():
                    peak[k] = max(peak[k], p.memory_info().rss)
            last = {k: sample(p) for k, p in procs.items()}
            rss = {k: p.memory_info().rss for k, p in procs.items()}
            threads = {k: p.num_threads() for k, p in procs.items()}
        finally:
            sleeper.kill()
            sleeper.wait()
        for c in run:
            c.signal(signal.SIGTERM)
        codes = [c.wait(60) for c in run]
        assert codes == [0] * len(run), codes

    print(f"python {sys.version.split()[0]}, {psutil.cpu_count()} CPUs, idle window {args.seconds:g} s\n")
    head = (
        f"{'process':<36} {'CPU %':>7} {'CPU ms/s':>9} {'RSS MiB':>8} {'peak MiB':>9} {'threads':>8} {'wakeups/s':>10}"
    )
    print(head)
    print("-" * len(head))
    for k in procs:
        wall = last[k].at - first[k].at
        cpu = last[k].cpu_s - first[k].cpu_s
        print(
            f"{k:<36} {cpu / wall * 100:>7.3f} {cpu / wall * 1000:>9.2f} {rss[k] / 2**20:>8.1f} "
            f"{peak[k] / 2**20:>9.1f} {threads[k]:>8} {(last[k].ctx - first[k].ctx) / wall:>10.1f}"
        )


if __name__ == "__main__":
    main()
