"""``adw top``: a live view of the store, refreshed in place (rich ``Live``).

Running attempts, the queue (state x priority) and provider health, read from the store
every ``--interval`` seconds; it writes nothing.  ``q`` or Ctrl-C quits and the terminal is
restored (its mode, the cursor, the screen).  ``--once`` prints one frame, for scripts.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import select
import sys
import termios
import time
import tty
from collections.abc import Iterator
from typing import Any

import click
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text
from sqlalchemy.exc import SQLAlchemyError

from adw_modules.config.schema import Config, ConfigError
from adw_modules.ops.display import format_usd
from adw_modules.queue.store import Store
from adw_modules.queue.tasks import PRIORITY_RANK, TaskState
from adws import queue_views
from adws.cli import config_error_exit, context_for
from adws.stores import open_store


def top_data(config: Config, store: Store) -> dict[str, Any]:
    """``adw status`` data, with each running attempt's tokens so far (None while unknown)."""
    data = queue_views.status_data(config, store)
    tokens = {
        (a.task_id, a.number): a.input_tokens + a.output_tokens + a.cache_read_tokens + a.cache_write_tokens
        for a in store.running_attempts()
    }
    for r in data["running"]:
        r["tokens"] = tokens.get((r["task_id"], r["attempt"])) or None
    return data


def elapsed(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _until(iso: str | None, now: dt.datetime) -> str:
    if iso is None:
        return "-"
    at = dt.datetime.fromisoformat(iso)
    if at <= now:
        return "over"
    return f"{at:%H:%M:%S} (in {elapsed((at - now).total_seconds())})"


def render(data: dict[str, Any] | None, now: dt.datetime, interval: float, error: str | None = None) -> Group:
    head = Text.assemble(
        ("adw top", "bold"), f"  {now:%Y-%m-%d %H:%M:%S} UTC  every {interval:g}s  ", ("q quits", "dim")
    )
    if data is None:
        return Group(head, Text(f"store unreachable: {error}", style="bold red"))
    parts: list[RenderableType] = [head]
    if error:
        parts.append(Text(f"last refresh failed: {error}", style="red"))

    running = Table(title=f"Running attempts ({len(data['running'])})", title_justify="left", expand=False)
    for col in ("task", "title", "provider/model", "elapsed", "pid", "tokens"):
        left = col in ("title", "provider/model")
        running.add_column(col, justify="left" if left else "right", no_wrap=True, max_width=48 if left else None)
    for r in data["running"]:
        started = dt.datetime.fromisoformat(r["started_at"])
        running.add_row(
            f"{r['task_id']} #{r['attempt']}",
            r["title"] or "",
            f"{r['provider']}/{r['model']}",
            elapsed((now - started).total_seconds()),
            "-" if r["pid"] is None else str(r["pid"]),
            "-" if r["tokens"] is None else f"{r['tokens']:,}",
        )
    parts.append(running)

    queue = Table(title="Queue", title_justify="left")
    queue.add_column("state")
    for p in [*PRIORITY_RANK, "total"]:
        queue.add_column(p, justify="right")
    for state in TaskState:
        row = data["queue"].get(str(state), {})
        queue.add_row(str(state), *(str(row.get(p, 0)) for p in PRIORITY_RANK), str(sum(row.values())))
    parts.append(queue)

    providers = Table(title="Providers", title_justify="left")
    for col in ("provider", "available", "circuit", "cooldown until", "success", "spend today"):
        providers.add_column(col, justify="right" if col in ("success", "spend today") else "left", no_wrap=True)
    for p in data["providers"]:
        rate = "-" if p["success_rate"] is None else f"{p['success_rate']:.0%}"
        cap = "" if p["daily_budget_usd"] is None else f" / {format_usd(p['daily_budget_usd'])}"
        providers.add_row(
            p["name"],
            Text("yes", style="green") if p["available"] else Text("no", style="red"),
            p["circuit"],
            _until(p["cooldown_until"], now),
            rate,
            f"{format_usd(p['spend_today_usd'])}{cap}",
        )
    parts.append(providers)
    coords = data["coordinators"]
    parts.append(Text(f"coordinators: {len(coords)}" + "".join(f"  {c['id']}@{c['host']}" for c in coords)))
    return Group(*parts)


class _Frames:
    """The latest frame; a failed read keeps the last good data and says why."""

    def __init__(self, config: Config, store: Store, interval: float) -> None:
        self.config, self.store, self.interval = config, store, interval
        self.data: dict[str, Any] | None = None

    def frame(self) -> Group:
        now = dt.datetime.now(dt.UTC)
        try:
            self.data = top_data(self.config, self.store)
            error = None
        except SQLAlchemyError as exc:
            error = type(exc).__name__
        return render(self.data, now, self.interval, error)


@contextlib.contextmanager
def _keys() -> Iterator[int | None]:
    """stdin in cbreak mode (keys arrive unbuffered, unechoed; Ctrl-C still interrupts); its fd or None."""
    if not sys.stdin.isatty():
        yield None
        return
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield fd
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _wait_for_quit(fd: int | None, timeout: float) -> bool:
    """Wait up to ``timeout`` s; True if q was pressed."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if fd is None:
            time.sleep(left)
            return False
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            key = os.read(fd, 32)
            if not key or b"q" in key.lower():
                return True  # q, or stdin closed
    return False


def run_top(config: Config, store: Store, interval: float, once: bool, console: Console | None = None) -> None:
    console = console or Console()
    frames = _Frames(config, store, interval)
    if once:
        console.print(frames.frame())
        return
    with _keys() as fd, Live(frames.frame(), console=console, screen=True, auto_refresh=False) as live:
        try:
            while not _wait_for_quit(fd, interval):
                live.update(frames.frame(), refresh=True)
        except KeyboardInterrupt:
            pass


@click.command("top")
@click.option("--interval", type=click.FloatRange(min=0.1), default=1.0, show_default=True, help="Seconds.")
@click.option("--once", is_flag=True, help="Print one frame and exit.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None)
def top_cmd(interval: float, once: bool, config_path: str | None) -> None:
    """Live view: running attempts, queue, provider health.  q or Ctrl-C quits."""
    config = context_for(config_path).config()
    try:
        store = open_store(config)
    except ConfigError as exc:
        config_error_exit(exc)
    try:
        run_top(config, store, interval, once)
    finally:
        store.close()
