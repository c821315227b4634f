#!/usr/bin/env python3
"""Wall time and peak RSS of short ``adw`` commands, as a ratio to ``python -c "import click"``.

Commands: ``adw --help``, ``adw route --label docs``, ``adw enqueue TITLE`` and ``adw status``,
each with ``--config`` pointing at a one-provider config on a SQLite store in a temp dir
(migrated before the first run, so no command pays for creating it).  The baseline is the
same interpreter running ``python -c "import click"`` (the floor of any click CLI).

Runs alternate, baseline then command, for every command in every round (B help B route B
enqueue B status, ...), so machine load hits both alike; each command's ratio is taken
against the baseline run just before it, and reported as median (min-max) over the rounds.
Peak RSS is each child's own VmHWM (polled from /proc while it runs), not the parent's.

Leaves out: a cold page cache (every run here after the first reads .pyc files from memory),
``adw run`` (see idle_cost.py), and shell start-up.

    .venv/bin/python bench/cli_startup.py            # --rounds 10
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import benchlib

from adw_modules.queue.store import Store

ADW = Path(sys.executable).parent / "adw"


def vm_hwm_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return None  # gone, or a zombie (no memory map left)


def timed(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, the child's peak RSS in MiB) of one run; fails if it exits non-zero.

    Peak RSS is the child's VmHWM, polled every 2 ms until it exits (the high-water mark only
    grows, so the last reading is the peak but for the last ms).  Not ``ru_maxrss`` from
    ``wait4``: a forked child's maxrss starts at its parent's RSS, and survives exec.
    """
    env = {k: v for k, v in os.environ.items() if k != "ADW_CONFIG"}
    peak = [0]
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)

    def watch() -> None:
        while proc.poll() is None:
            kib = vm_hwm_kib(proc.pid)
            if kib is not None:
                peak[0] = max(peak[0], kib)
            time.sleep(0.002)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    _, err = proc.communicate()
    wall = time.perf_counter() - t0
    watcher.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{argv} exited {proc.returncode}: {err.decode(errors='replace')[-2000:]}")
    return wall, peak[0] / 1024.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="adw-cli-") as tmp:
        root = Path(tmp)
        url = f"sqlite:///{root / 'adw.db'}"
        Store.open(url).close()
        argv, _ = benchlib.sh_worker_argv(root / "w")
        config = str(benchlib.write_config(root, url, "cli", argv))
        commands = {
            "adw --help": [str(ADW), "--help"],
            "adw route --label docs": [str(ADW), "route", "--label", "docs", "--config", config],
            "adw enqueue TITLE": [str(ADW), "enqueue", "bench task", "--config", config],
            "adw status": [str(ADW), "status", "--config", config],
        }
        baseline = [sys.executable, "-c", "import click"]
        for cmd in [baseline, *commands.values()]:  # warm the page cache and .pyc files
            timed(cmd)
        base: dict[str, list[tuple[float, float]]] = {k: [] for k in commands}
        runs: dict[str, list[tuple[float, float]]] = {k: [] for k in commands}
        for _ in range(args.rounds):
            for name, cmd in commands.items():
                base[name].append(timed(baseline))
                runs[name].append(timed(cmd))
    s = benchlib.spread
    all_base = [w for v in base.values() for w, _ in v]
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {args.rounds} rounds; median (min-max)")
    print(f'baseline python -c "import click": {s([w * 1000 for w in all_base])} ms, ', end="")
    print(f"peak RSS {s([r for v in base.values() for _, r in v])} MiB\n")
    rows = []
    for name, rs in runs.items():
        ratios = [w / b for (w, _), (b, _) in zip(rs, base[name], strict=True)]
        rows.append((name, s([w * 1000 for w, _ in rs], "{:.0f}"), s(ratios, "{:.1f}"), s([r for _, r in rs])))
    print(benchlib.table(["command", "wall ms", "x import click", "peak RSS MiB (child)"], rows))
    for name, rs in runs.items():
        ratio = benchlib.median([w / b for (w, _), (b, _) in zip(rs, base[name], strict=True)])
        print(f"FIGURE {name.split()[1] if name != 'adw --help' else '--help'} ratio_to_import_click {ratio:.1f}")


if __name__ == "__main__":
    main()
