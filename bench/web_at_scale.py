#!/usr/bin/env python3
"""The web console's server time with 100,000 tasks in the store, vs an empty store.

The store is filled as ``status_at_scale.py`` fills it (3 tasks run to success by the real
service loop, then cloned with bulk inserts to ``--tasks`` finished tasks with their attempts
and events; PostgreSQL: sequences moved on, ANALYZE), and the clones' attempts are spread
over the last ``--spread-days`` days (90; 0 keeps them all today, the worst case for the
overview, whose spend today sums the day's attempts as ``adw status`` does).  The console is built in process over
that store and config (``adws.web.server.make_console``, the app ``adw web`` serves) and each
page is requested through Starlette's TestClient with a bearer token: what is timed is the
server's whole handling of one request (routing, auth, the store's reads, rendering,
redaction), without a socket or a browser.

Measured, alternating full store / empty store (A B A B ...), ``--rounds`` pairs of
``--requests`` requests each (the median per round is kept): ``/`` (overview), ``/tasks``
(the first page), ``/tasks?after=…`` (a keyset page half way down), ``/tasks?text=…``
(a title search that matches), ``/api/v1/tasks``, ``/spend`` (30 days of attempts by provider,
model and label, per day and per hour, with their charts), ``/stats`` (``adw stats``: the
last 30 days' attempts by target).

Leaves out: queued backlogs (every clone is finished: the queue table is one group), the
live stream (one poll per app, whatever the number of pages open), the network.

    .venv/bin/python bench/web_at_scale.py       # --tasks 100000 --backends sqlite,pg --rounds 5 --requests 20
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import benchlib
import sqlalchemy as sa
import status_at_scale

from adw_modules.config.schema import load_config
from adw_modules.queue.store import Store

TOKEN = "bench-token-0123456789"
PAGES = ["/", "/tasks", "/tasks?after={middle}", "/tasks?text=bulk%20task%2099", "/api/v1/tasks", "/spend", "/stats"]


def client_for(config_path: Path, url: str) -> tuple[object, Store, Callable[[], None]]:
    from starlette.testclient import TestClient

    from adws.web.app import create_app
    from adws.web.server import make_console

    text = config_path.read_text() + '\n[web]\ntoken_env = "ADW_BENCH_WEB_TOKEN"\n'
    config_path.write_text(text)
    store = Store.open(url)
    console = make_console(load_config(config_path), store, {"ADW_BENCH_WEB_TOKEN": TOKEN}, in_coordinator=True)
    client = TestClient(create_app(console), base_url="http://127.0.0.1", headers={"Authorization": f"Bearer {TOKEN}"})
    client.__enter__()

    def close() -> None:
        client.__exit__(None, None, None)
        console.watcher.stop()
        store.close()

    return client, store, close


def middle_cursor(client: object, store: Store) -> str:
    from adws.web import pages

    tasks = store.list_tasks(limit=max(1, len(store.list_tasks(limit=200_000)) // 2))
    last = tasks[-1]
    return pages.cursor((last.created_at, last.id)) or ""


def timed(client: object, path: str, requests: int) -> float:
    """Median ms of ``requests`` GETs of ``path`` (each must answer 200)."""
    samples = []
    for _ in range(requests):
        t0 = time.perf_counter()
        r = client.get(path)  # type: ignore[attr-defined]
        samples.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200, (path, r.status_code, r.text[:300])
    return statistics.median(samples)


def spread_over_days(url: str, days: int) -> None:
    """Move each clone's attempt (start and end alike) back ``id % days`` days: a store that
    grew over ``days`` days, not 100,000 attempts started today (which is what cloning gives,
    and what ``--spread-days 0`` keeps: the worst case for the day's spend).  PostgreSQL:
    then VACUUM ANALYZE, as autovacuum would after bulk writes (it sets the visibility map
    that lets the queue counts read the (state, priority) index alone)."""
    engine = sa.create_engine(url)
    try:
        if days > 1:
            with engine.begin() as conn:
                if engine.dialect.name == "sqlite":
                    # Stored as naive UTC text; datetime() keeps whole seconds, which the column reads back.
                    shift = f"'-' || (id % {days}) || ' days'"
                    set_times = f"started_at = datetime(started_at, {shift}), ended_at = datetime(ended_at, {shift})"
                else:
                    shift = f"(id % {days}) * interval '1 day'"
                    set_times = f"started_at = started_at - {shift}, ended_at = ended_at - {shift}"
                conn.execute(sa.text(f"UPDATE attempts SET {set_times}"))
        if engine.dialect.name == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(sa.text("VACUUM ANALYZE"))
    finally:
        engine.dispose()


def timed_round(client: object, path: str, requests: int, _round: int) -> float:
    return timed(client, path, requests)


def measure(backend: str, base: Path, full: str, empty: str, args: argparse.Namespace) -> tuple[list, list]:
    """Rows (backend, page, full ms, empty ms) and FIGURE lines for one backend."""
    status_at_scale.seed(full, base / "full" / "seed")
    Store.open(empty).close()
    filled = status_at_scale.fill(full, args.tasks)
    spread_over_days(full, args.spread_days)
    print(f"  {backend}: filled {args.tasks:,} tasks in {filled:.0f} s", file=sys.stderr, flush=True)
    argv, _ = benchlib.sh_worker_argv(base / "w")
    a, a_store, close_a = client_for(benchlib.write_config(base / "full", full, "web", argv), full)
    b, _, close_b = client_for(benchlib.write_config(base / "empty", empty, "web", argv), empty)
    rows, figures = [], []
    try:
        middle = middle_cursor(a, a_store)
        for path in PAGES:
            on_full, on_empty = path.format(middle=middle), path.format(middle="0_0")
            timed(a, on_full, 3)  # warm up both
            timed(b, on_empty, 3)
            full_ms, empty_ms = benchlib.alternate(
                args.rounds,
                functools.partial(timed_round, a, on_full, args.requests),
                functools.partial(timed_round, b, on_empty, args.requests),
            )
            rows.append(
                (backend, path.replace("{middle}", "<half way>"), benchlib.spread(full_ms), benchlib.spread(empty_ms))
            )
            key = {"/": "overview", "/tasks": "tasks", "/spend": "spend", "/stats": "stats"}.get(path)
            if key:
                suffix = "" if args.spread_days > 1 else "_all_today"
                figures.append(f"FIGURE {backend} web_{key}_ms_at_{args.tasks}{suffix} {benchlib.median(full_ms):.1f}")
    finally:
        close_a()
        close_b()
    return rows, figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=100_000)
    ap.add_argument("--backends", default="sqlite,pg")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--requests", type=int, default=20)
    ap.add_argument(
        "--spread-days",
        type=int,
        default=90,
        help="attempts started over this many days (0: all today, the worst case)",
    )
    args = ap.parse_args()
    rows, figures = [], []
    with tempfile.TemporaryDirectory(prefix="adw-web-scale-") as tmp:
        for backend in [b for b in args.backends.split(",") if b]:
            base = Path(tmp) / backend
            (base / "full").mkdir(parents=True)
            (base / "empty").mkdir(parents=True)
            with benchlib.store_url(backend, base / "full") as full:
                with benchlib.store_url(backend, base / "empty") as empty:
                    more_rows, more_figures = measure(backend, base, full, empty, args)
            rows += more_rows
            figures += more_figures
    when = f"started over {args.spread_days} days" if args.spread_days > 1 else "all started today"
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {args.tasks:,} finished tasks ({when}); ", end="")
    print(f"server ms per request, median of {args.rounds} rounds' medians (min-max)\n")
    print(benchlib.table(["backend", "page", "full store ms", "empty store ms"], rows))
    print("\n".join(figures))


if __name__ == "__main__":
    main()
