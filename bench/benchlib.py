"""Shared pieces of the bench/ scripts: alternation, medians and ranges, workers, configs, and
what a process reports about itself (peak RSS, per-thread wake-ups).

Scripts import it as ``import benchlib`` (bench/ is on sys.path when a script in it runs).
Only public store/coordinator APIs are used, so the scripts run against old and new code.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

T = TypeVar("T")

# The Claude-style final line a worker prints so the attempt counts as a success.
RESULT_LINE = json.dumps(
    {
        "type": "result",
        "subtype": "success",
        "is_error": False,
        "result": "ok",
        "session_id": "s",
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }
)


# ---------------------------------------------------------------- statistics


def spread(values: Sequence[float], fmt: str = "{:.1f}") -> str:
    """``median (min-max)`` of the values, each formatted with ``fmt``."""
    if not values:
        return "-"
    med = fmt.format(statistics.median(values))
    if len(values) == 1:
        return med
    return f"{med} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def alternate(pairs: int, measured: Callable[[int], T], baseline: Callable[[int], T]) -> tuple[list[T], list[T]]:
    """Run ``measured`` and ``baseline`` in turn (A B A B ...), ``pairs`` times each.

    Alternation puts both sides under the same machine load, which drifts over minutes on a
    shared 2-core machine; a baseline measured once, before, does not.
    """
    a: list[T] = []
    b: list[T] = []
    for i in range(pairs):
        a.append(measured(i))
        b.append(baseline(i))
    return a, b


# ---------------------------------------------------------------- self-reports of a process


def peak_rss_mib() -> float:
    """This process's peak RSS in MiB (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def own_cpu_s() -> float:
    """User + system CPU of this process's threads (children excluded)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


@dataclass(frozen=True)
class ThreadSwitches:
    tid: int
    name: str
    voluntary: int
    involuntary: int


def thread_switches(pid: int) -> dict[int, ThreadSwitches]:
    """Context switches of every thread of ``pid`` (from /proc/PID/task/*/status), by thread id.

    A thread that exited between two samples simply disappears; its switches are lost, which
    only under-counts a thread pool's churn (the coordinator's threads are long-lived).
    """
    out: dict[int, ThreadSwitches] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return out
    for tid in tids:
        try:
            text = Path(f"/proc/{pid}/task/{tid}/status").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        out[int(tid)] = ThreadSwitches(
            int(tid),
            fields.get("Name", "?").strip(),
            int(fields.get("voluntary_ctxt_switches", "0")),
            int(fields.get("nonvoluntary_ctxt_switches", "0")),
        )
    return out


# ---------------------------------------------------------------- workers and configs


def sh_worker_argv(root: Path) -> tuple[list[str], Path]:
    """A ~1 ms worker: /bin/sh appends ``done <task_id> <pid>`` to a log, prints the result line.

    Returns the provider's command template (``{task_id}`` as its own element) and the log.
    """
    root.mkdir(parents=True, exist_ok=True)
    result = root / "result.jsonl"
    result.write_text(RESULT_LINE + "\n")
    log = root / "worker.log"
    script = f'echo "done $1 $$" >> {log}; cat {result}'
    return ["/bin/sh", "-c", script, "sh", "{task_id}"], log


def python_worker_argv(root: Path) -> tuple[list[str], Path]:
    """tests/coordinator/worker.py in ``ok`` mode (``python -I -S``, ~10-30 ms of start-up)."""
    from tests.coordinator.harness import WORKER

    root.mkdir(parents=True, exist_ok=True)
    log = root / "worker.log"
    return [sys.executable, "-I", "-S", str(WORKER), "--log", str(log), "--mode", "ok", "{task_id}"], log


def worker_argv(kind: str, root: Path) -> tuple[list[str], Path]:
    if kind == "sh":
        return sh_worker_argv(root)
    if kind == "python":
        return python_worker_argv(root)
    raise ValueError(f"unknown worker {kind!r} (sh, python)")


def done_counts(log: Path) -> dict[int, int]:
    """How many times each task ran, from the worker-side log."""
    counts: dict[int, int] = {}
    if not log.exists():
        return counts
    for line in log.read_text().splitlines():
        _, task, _ = line.split()
        counts[int(task)] = counts.get(int(task), 0) + 1
    return counts


def provider_toml(argv: Sequence[str], name: str = "w") -> str:
    return (
        f"[providers.{name}]\n"
        f"command_template = {json.dumps(list(argv))}\n"
        "timeout = 600\n"
        "idle_timeout = 600\n"
        f"[providers.{name}.models.m]\n"
        'tier = "fast"\n'
        'capabilities = ["code"]\n'
    )


def default_timings() -> dict[str, Any]:
    """CoordinatorConfig's own defaults for the loop timings (the harness's are the tests' fast ones)."""
    from adw_modules.config.service import CoordinatorConfig

    d = CoordinatorConfig()
    names = ("heartbeat_s", "lease_s", "dispatch_interval_s", "reap_interval_s")
    return {k: getattr(d, k) for k in names if hasattr(d, k)}


def write_config(
    root: Path, store_url: str, name: str, argv: Sequence[str], *, defaults: bool = True, **coordinator: Any
) -> Path:
    """``<root>/<name>/config.toml`` for a coordinator with one provider running ``argv``."""
    from tests.coordinator.harness import Setup

    settings = default_timings() if defaults else {}
    settings.update(coordinator)
    return Setup(root, store_url).config(name, providers=provider_toml(argv), **settings)


def bare_spawns(argv: Sequence[str], n: int, threads: int = 4) -> float:
    """Seconds to run ``argv`` (``{task_id}`` filled with 0..n-1) n times with subprocess.run, ``threads`` at a time."""
    from concurrent.futures import ThreadPoolExecutor

    def one(i: int) -> None:
        cmd = [part.replace("{task_id}", str(i)) for part in argv]
        done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, check=False)
        assert done.returncode == 0 and b'"result"' in done.stdout, done

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(n)))
    return time.perf_counter() - t0


def run_child(argv: Sequence[str], timeout_s: float = 900, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run a child that prints one JSON object as its last stdout line; that object."""
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout_s, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{argv} exited {done.returncode}:\n{done.stderr[-4000:]}")
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    return dict(json.loads(lines[-1]))


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A plain aligned text table (first column left, the rest right)."""
    body = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(headers)]
    lines = [
        "  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths, strict=True)))
    ]
    lines.append("  ".join("-" * w for w in widths))
    for r in body:
        lines.append(
            "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        )
    return "\n".join(lines)


@contextlib.contextmanager
def store_url(backend: str, root: Path) -> Iterator[str]:
    """A fresh store: a SQLite file under ``root``, or a scratch PostgreSQL database (dropped after)."""
    if backend == "sqlite":
        yield f"sqlite:///{root / 'adw.db'}"
    else:
        from tests.coordinator.harness import scratch_pg_database

        with scratch_pg_database() as url:
            yield url
