"""What supervision costs per attempt: ``runner.run`` against a bare ``subprocess.run``.

Both run the same worker with the same environment and capture its output; attempts are
interleaved (baseline, runner, baseline, ...) so drift in machine load hits both sides alike.
Reported as per-attempt milliseconds and the runner/baseline ratio.

    .venv/bin/python bench/supervision_overhead.py [--attempts 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from adw_modules.workers import runner  # noqa: E402

ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
WORKERS: dict[str, list[str]] = {
    "/bin/true": ["/bin/true"],
    "dry-run agent (success)": [
        sys.executable,
        str(REPO / "tools" / "dry-run-agent.py"),
        "-p",
        "Fix the flaky test",
        "--output-format",
        "stream-json",
        "--verbose",
    ],
}


def bare(argv: Sequence[str]) -> None:
    done = subprocess.run(argv, cwd=REPO, env=ENV, stdin=subprocess.DEVNULL, capture_output=True, check=False)
    assert done.returncode == 0, done.stderr


def supervised(argv: Sequence[str]) -> None:
    spec = runner.RunSpec(argv=argv, cwd=REPO, env=ENV, timeout_s=60, idle_timeout_s=30)
    result = runner.run(spec, on_line=lambda line: None)
    assert result.exit_code == 0 and result.ended_by == "exit", result


def timed(fn: Callable[[Sequence[str]], None], argv: Sequence[str]) -> float:
    t0 = time.perf_counter()
    fn(argv)
    return (time.perf_counter() - t0) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--attempts", type=int, default=200)
    n = ap.parse_args().attempts
    print(f"{n} attempts per side, interleaved; python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    head = ("worker", "bare median", "runner median", "ratio", "bare mean", "runner mean")
    print("{:26} {:>12} {:>14} {:>6} {:>10} {:>12}".format(*head))
    for name, argv in WORKERS.items():
        bare(argv)  # warm caches on both sides
        supervised(argv)
        base: list[float] = []
        sup: list[float] = []
        for _ in range(n):
            base.append(timed(bare, argv))
            sup.append(timed(supervised, argv))
        bm, sm = statistics.median(base), statistics.median(sup)
        ba, sa = statistics.fmean(base), statistics.fmean(sup)
        print(f"{name:26} {bm:10.2f}ms {sm:12.2f}ms {sm / bm:6.2f} {ba:8.2f}ms {sa:10.2f}ms")


if __name__ == "__main__":
    main()
