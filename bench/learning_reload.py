#!/usr/bin/env python3
"""Routing that learns (issue 16): what reloading the learned statistics from the store costs.

A coordinator loads its statistics at start and reloads them every ``[learning] reload_s``
(``ops.stats.load_learning``: the finished attempts of the last ``history_days`` with their
task's fate, read into Python and counted).  This script fills a store (SQLite, PostgreSQL) with
``--attempts`` finished attempts started within the last day (clones of a few real tasks made
through the store's own API, as bench/status_at_scale.py fills), then times a full reload, wall and
this process's CPU, against the same reload on a store of ``--baseline`` attempts, in turn
(A B A B ...); then an incremental reload (``success = "attempt"``: only the attempts above
the last watermark, here none new) after a full one.  Also reported: the peak RSS.

    .venv/bin/python bench/learning_reload.py [--attempts 100000] [--baseline 1000] [--repeat 5] [--backends sqlite,pg]
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import benchlib
import status_at_scale

from adw_modules.config.schema import Config, load_config
from adw_modules.ops.stats import load_learning
from adw_modules.queue.store import Store
from adw_modules.queue.tasks import AttemptEnd, AttemptStart, TaskState, Transition
from adw_modules.routing.learning import LearningStats
from adw_modules.sources.local import enqueue_local

CONFIG = """
[providers.alpha]
command_template = ["true", "{model}"]

[routing]
enabled = true
default_provider = "alpha"
default_model = "a-small"

[[routing.rules]]
name = "learned"
priority = 1
model_select = { pick = "learned", candidates = ["alpha:a-small", "alpha:a-big"], learn_by = ["labels"] }
"""


def template(store: Store, now: dt.datetime) -> None:
    """One succeeded task with one finished attempt: what the fill clones."""
    task = enqueue_local(store, "template", "body", priority="normal", labels=["bug", "ui"], external_id="tpl")
    claimed = store.claim_task("bench/1", now + dt.timedelta(minutes=5), now)
    assert claimed is not None and claimed.id == task.id
    start = AttemptStart(
        provider="alpha", model="a-small", rule="learned", routing={}, config_fingerprint="f" * 16, host="bench"
    )
    attempt = store.start_attempt(task.id, "bench/1", start, now)
    assert attempt is not None
    end = AttemptEnd(outcome="success", cost_usd=0.02)
    done = now + dt.timedelta(seconds=90)
    assert store.finish_attempt(attempt.id, "bench/1", end, Transition(TaskState.SUCCEEDED), done)


def filled(url: str, attempts: int, now: dt.datetime) -> None:
    store = Store.open(url)
    try:
        template(store, now)
    finally:
        store.close()
    status_at_scale.fill(url, attempts)


def reload_once(url: str, config: Config, now: dt.datetime, incremental: bool = False) -> tuple[float, float, int]:
    """One reload, timed: a full one into fresh statistics, or (``incremental``) one after a full
    load, with nothing new since (what most reloads of a quiet hour are)."""
    store = Store.open(url)
    try:
        stats = LearningStats()
        if incremental:
            load_learning(store, stats, config, now)
        wall, cpu = time.perf_counter(), time.process_time()
        counted = load_learning(store, stats, config, now, incremental=incremental)
        return time.perf_counter() - wall, time.process_time() - cpu, counted
    finally:
        store.close()


def timed(url: str, config: Config, now: dt.datetime, incremental: bool) -> Callable[[int], tuple[float, float, int]]:
    return lambda _round: reload_once(url, config, now, incremental)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--attempts", type=int, default=100_000)
    ap.add_argument("--baseline", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--backends", default="sqlite,pg")
    args = ap.parse_args()
    now = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    rows, figures = [], []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.toml"
        path.write_text(CONFIG)
        config = load_config(path)
        for backend in args.backends.split(","):
            with (
                benchlib.store_url(backend, Path(tmp) / f"{backend}-big") as big,
                benchlib.store_url(backend, Path(tmp) / f"{backend}-small") as small,
            ):
                for url, n in ((big, args.attempts), (small, args.baseline)):
                    Path(tmp, f"{backend}-{'big' if url == big else 'small'}").mkdir(exist_ok=True)
                    filled(url, n, now)
                runs_big, runs_small = benchlib.alternate(
                    args.repeat, timed(big, config, now, False), timed(small, config, now, False)
                )
                runs_inc, _ = benchlib.alternate(
                    args.repeat, timed(big, config, now, True), timed(small, config, now, True)
                )
                assert runs_big[0][2] == args.attempts, runs_big[0]
                assert runs_inc[0][2] == 0, runs_inc[0]  # the margin's ids are read again, none counted twice
                s = benchlib.spread
                rows.append(
                    (
                        backend,
                        f"{args.attempts:,}",
                        s([r[0] for r in runs_big], "{:.2f}"),
                        s([r[1] for r in runs_big], "{:.2f}"),
                        s([r[0] * 1000 for r in runs_small], "{:.1f}"),
                        s([r[0] * 1000 for r in runs_inc], "{:.1f}"),
                    )
                )
                at = f"at_{args.attempts}"
                figures += [
                    f"FIGURE {backend} learning_reload_wall_s_{at} {benchlib.median([r[0] for r in runs_big]):.2f}",
                    f"FIGURE {backend} learning_reload_cpu_s_{at} {benchlib.median([r[1] for r in runs_big]):.2f}",
                    f"FIGURE {backend} learning_incremental_reload_wall_ms_{at} "
                    f"{benchlib.median([r[0] * 1000 for r in runs_inc]):.1f}",
                ]
    heads = ["backend", "attempts", "full reload wall s", "full reload CPU s", f"full, wall ms at {args.baseline:,}"]
    print(benchlib.table([*heads, "incremental, wall ms"], rows))
    print(f"peak RSS {benchlib.peak_rss_mib():.0f} MiB")
    print("\n".join(figures))


if __name__ == "__main__":
    main()
