"""Each console page's data: the CLI's own view functions, plus what only a page shows.

The JSON endpoints return exactly what the matching ``--json`` command prints (``queue_views``
/ ``views``); a page adds live details around it (tokens so far, p50 durations, the leader,
the rendered transcript, dead rules).  Everything here is a plain dict the templates show
escaped.
"""

from __future__ import annotations

import datetime as dt
import re
import socket
import statistics
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from adw_modules.config.schema import Config
from adw_modules.outcomes import Usage
from adw_modules.queue.store import Store, TaskFilter
from adw_modules.queue.tasks import PRIORITY_RANK, Attempt, TaskState
from adw_modules.routing.conditions import PRIORITIES, WEEKDAYS
from adw_modules.routing.pricing import estimate_cost
from adw_modules.routing.providers import ProviderRegistry
from adw_modules.routing.router import ModelRouter, TaskAttrs
from adw_modules.workers import transcripts
from adws import queue_views, views
from adws.web.spendcache import SpendCache

TRANSCRIPT_LINES = 2000  # the newest lines shown of a long transcript
TRANSCRIPT_TAIL_BYTES = 4 << 20  # read from the end: a page refreshed live never reads a 1 GB file
COORDINATOR_FRESH_S = 60.0  # a coordinator whose heartbeat is older is not counted as running


def coordinator_running(store: Store, now: dt.datetime) -> bool:
    for c in store.coordinators():
        beat = c.get("heartbeat_at")
        if isinstance(beat, dt.datetime) and (now - beat).total_seconds() <= COORDINATOR_FRESH_S:
            return True
    return False


# ---------------------------------------------------------------- overview


def overview(
    config: Config, store: Store, github_remaining: Callable[[], int | None] | None, now: dt.datetime
) -> dict[str, Any]:
    status = queue_views.status_data(config, store, now)
    prices = {(m.provider, m.name): m.price for m in ProviderRegistry(config).list_models()}
    live = {(a.task_id, a.number): a for a in store.running_attempts()}
    for row in status["running"]:
        att = live.get((row["task_id"], row["attempt"]))
        if att is not None:
            usage = Usage(att.input_tokens, att.output_tokens, att.cache_read_tokens, att.cache_write_tokens)
            row["input_tokens"], row["output_tokens"] = att.input_tokens, att.output_tokens
            row["cost_so_far_usd"] = estimate_cost(usage, prices.get((att.provider, att.model)))
    durations = store.recent_durations()
    for p in status["providers"]:
        pc = config.providers[p["name"]]
        p["enabled"] = pc.enabled
        seen = durations.get(p["name"])
        p["p50_duration_s"] = round(statistics.median(seen), 1) if seen else None
    remaining = None if github_remaining is None else github_remaining()
    return {
        "status": status,
        "states": [str(s) for s in TaskState],
        "priorities": list(PRIORITY_RANK),
        "leaders": store.leaders(),
        "github_remaining": remaining,
        "github_known": github_remaining is not None,
        "github_configured": config.github is not None,
        "coordinator_running": coordinator_running(store, now),
    }


# ---------------------------------------------------------------- tasks


def parse_cursor(raw: str | None) -> tuple[dt.datetime, int] | None:
    """``<µs since the epoch>_<id>`` (what ``cursor`` writes: URL-safe); ValueError if malformed."""
    if not raw:
        return None
    micros, _, task_id = raw.partition("_")
    if not (micros.isascii() and micros.isdigit() and task_id.isascii() and task_id.isdigit()):
        raise ValueError(f"after must be <digits>_<digits>, not {raw[:40]!r}")
    if len(micros) > 17 or len(task_id) > 18:  # past year 5000, or past a 64-bit id: no such row
        raise ValueError("after is out of range")
    at = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=int(micros))
    return at, int(task_id)


def cursor(key: tuple[dt.datetime, int] | None) -> str | None:
    if key is None:
        return None
    delta = key[0] - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return f"{(delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds}_{key[1]}"


FILTER_KEYS = ("state", "source", "repo", "label", "provider", "text")
MAX_FILTER_CHARS = 500  # longer is no search anyone types; SQLite refuses LIKE patterns over 50,000 bytes


def task_filter(params: Mapping[str, str]) -> TaskFilter:
    """The filter from query parameters; an unknown state is a ValueError (the page says so)."""
    values = {k: (params.get(k) or "").strip() or None for k in FILTER_KEYS}
    for key, value in values.items():
        if value is not None and len(value) > MAX_FILTER_CHARS:
            raise ValueError(f"{key} is {len(value):,} characters long: at most {MAX_FILTER_CHARS}")
        if value is not None and any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
            raise ValueError(f"{key} has a control character (NUL, newline, escape...): leave it out")
    if values["state"] is not None and values["state"] not in {str(s) for s in TaskState}:
        raise ValueError(f"state must be one of {', '.join(str(s) for s in TaskState)}")
    return TaskFilter(**values)


def task_list(store: Store, flt: TaskFilter, after: str | None, limit: int) -> dict[str, Any]:
    tasks, next_key = store.task_page(flt, parse_cursor(after), limit)
    data = queue_views.tasks_data(tasks)
    data["next"] = cursor(next_key)
    return data


# ---------------------------------------------------------------- one task


def line_kind(line: str) -> str:
    """How a rendered transcript line is styled (transcripts.Renderer's own markers)."""
    for mark, kind in (("→", "tool"), ("←", "result"), ("✗", "error"), ("⚠", "retry"), ("──", "meta"), ("…", "delta")):
        if line.startswith(mark):
            return kind
    return "text"


ANSI_ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
MAX_LINE_CHARS = 10_000  # one 10 MB line is no page: its start, and where to read the rest


def for_screen(line: str) -> str:
    """A transcript line as a page shows it: terminal escapes (colours, titles, clears) and
    other control characters removed, at most MAX_LINE_CHARS (masked before it is cut)."""
    text = CONTROL.sub("", ANSI_ESCAPE.sub("", line))
    if len(text) > MAX_LINE_CHARS:
        text = f"{text[:MAX_LINE_CHARS]} … ({len(text) - MAX_LINE_CHARS:,} more characters: adw task log shows them)"
    return text


def transcript(config: Config, attempt: Attempt, redact: Callable[[str], str]) -> dict[str, Any]:
    """The attempt's transcript rendered as ``adw task log`` renders it, masked, newest TRANSCRIPT_LINES lines."""
    path = transcripts.transcript_path(config.service.coordinator.state_dir, attempt)
    if attempt.host != socket.gethostname():
        return {"lines": [], "note": f"attempt {attempt.number} ran on {attempt.host}: its transcript is there"}
    provider = config.providers.get(attempt.provider)
    renderer = transcripts.Renderer(provider.output_format if provider is not None else "claude-stream-json")
    shown: list[tuple[str, str]] = []
    clipped = False
    try:
        with Path(path).open("rb") as f:
            size = f.seek(0, 2)
            clipped = size > TRANSCRIPT_TAIL_BYTES
            f.seek(max(0, size - TRANSCRIPT_TAIL_BYTES))
            if clipped:
                f.readline()  # the cut line's rest
            for raw in f:
                for line in renderer.lines(redact(raw.decode("utf-8", "replace"))):
                    shown.append((line_kind(line), for_screen(redact(line))))
    except FileNotFoundError:
        note = "no transcript yet" if attempt.state == "running" else "transcript gone (pruned by retention?)"
        return {"lines": [], "note": note}
    if attempt.state == "finished":
        shown += [("meta", redact(line)) for line in transcripts.ending(attempt)]
    clipped = clipped or len(shown) > TRANSCRIPT_LINES
    return {
        "lines": shown[-TRANSCRIPT_LINES:],
        "note": "its latest part only (adw task log shows all of it)" if clipped else None,
    }


def transcript_size(config: Config, store: Store, task_id: int) -> int:
    """Bytes in the task's running attempt's transcript (0 if none): the live stream follows it."""
    for att in store.running_attempts():
        if att.task_id == task_id:
            try:
                return transcripts.transcript_path(config.service.coordinator.state_dir, att).stat().st_size
            except OSError:
                return 0
    return 0


def task_page(
    config: Config, store: Store, task_id: int, number: int | None, redact: Callable[[str], str]
) -> dict[str, Any] | None:
    data = queue_views.task_data(store, task_id)
    if data is None:
        return None
    attempts = store.attempts_for(task_id)
    chosen = attempts[-1] if number is None and attempts else next((a for a in attempts if a.number == number), None)
    return {
        "data": data,
        "shown_attempt": None if chosen is None else chosen.number,
        "transcript": None if chosen is None else transcript(config, chosen, redact),
        "running": any(a.state == "running" for a in attempts),
        "durations": {a.number: (a.ended_at - a.started_at).total_seconds() for a in attempts if a.ended_at},
    }


# ---------------------------------------------------------------- spend


def spend(config: Config, store: Store, now: dt.datetime, cache: SpendCache | None = None) -> dict[str, Any]:
    """Per day (30 days) and per hour (48 h), by provider, model and label; caps per provider.
    The days are the hours summed (one read of the store per group, settled hours cached)."""
    start_of_day = now.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    day_from = start_of_day - dt.timedelta(days=29)
    hour_from = now.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=47)
    days = [(day_from + dt.timedelta(days=i)).strftime("%Y-%m-%d") for i in range(30)]
    hours = [(hour_from + dt.timedelta(hours=i)).strftime("%Y-%m-%d %H:00") for i in range(48)]
    caps = {name: pc.daily_budget_usd for name, pc in config.providers.items() if pc.daily_budget_usd is not None}
    per_hour = (cache or SpendCache()).hourly(store, day_from, now)
    sections = []
    for by in ("provider", "model", "label"):
        rows = per_hour[by]
        sections.append(
            {
                "by": by,
                "daily": _by_day(rows),
                "hourly": [r for r in rows if r["bucket"] >= hours[0]],
                "caps": caps if by == "provider" else {},
            }
        )
    return {"days": days, "hours": hours, "sections": sections, "caps": caps}


def _by_day(hourly: list[dict[str, Any]]) -> list[dict[str, Any]]:
    days: dict[tuple[str, str], dict[str, Any]] = {}
    for r in hourly:
        day = r["bucket"][:10]
        acc = days.setdefault(
            (day, r["key"]), {"bucket": day, "key": r["key"], "attempts": 0, "cost_usd": 0.0, "tokens": 0}
        )
        acc["attempts"] += r["attempts"]
        acc["cost_usd"] += r["cost_usd"]
        acc["tokens"] += r["tokens"]
    return [days[k] for k in sorted(days)]


# ---------------------------------------------------------------- routing


def dead_rules(config: Config) -> dict[str, str]:
    """Rules that can never be chosen, and why: disabled, or shadowed by an earlier enabled rule
    whose conditions are a subset of theirs (it matches whenever they do, and is checked first)."""
    dead: dict[str, str] = {}
    earlier: list[Any] = []
    for rule in config.routing.rules:  # already in the order the router checks them
        raw = dict(rule.conditions.raw)
        if not rule.enabled:
            dead[rule.name] = "disabled"
            continue
        for prev in earlier:
            prev_raw = dict(prev.conditions.raw)
            if all(k in raw and raw[k] == v for k, v in prev_raw.items()):
                dead[rule.name] = f'shadowed by "{prev.name}", which matches whenever this one does'
                break
        earlier.append(rule)
    return dead


def routing(config: Config, router: ModelRouter) -> dict[str, Any]:
    return {"data": views.routing_data(config, router), "dead": dead_rules(config)}


def _int_in(value: Any, name: str, low: int, high: int | None = None) -> int | None:
    if value in (None, ""):
        return None
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a whole number, not {str(value)[:40]!r}") from None
    if n < low or (high is not None and n > high):
        raise ValueError(f"{name} must be between {low} and {high}" if high is not None else f"{name} must be ≥ {low}")
    return n


def route_attrs(params: Mapping[str, Any]) -> tuple[TaskAttrs, bool]:
    """The playground's (or POST /api/v1/route's) task attributes, and ignore_availability;
    ValueError saying which field is wrong."""
    priority = str(params.get("priority") or "normal")
    if priority not in PRIORITIES:
        raise ValueError(f"priority must be one of {', '.join(PRIORITIES)}")
    labels = params.get("labels") or []
    if isinstance(labels, str):
        labels = [x.strip() for x in labels.split(",")]
    if not isinstance(labels, list):
        raise ValueError("labels must be a list of strings (or comma-separated)")
    weekday = params.get("weekday") or None
    if weekday is not None and weekday not in WEEKDAYS:
        raise ValueError(f"weekday must be one of {', '.join(WEEKDAYS)}")
    attrs = TaskAttrs(
        priority=priority,
        labels=frozenset(str(x) for x in labels if str(x)),
        retry_count=_int_in(params.get("retry_count"), "retry_count", 0) or 0,
        repo=str(params["repo"]) if params.get("repo") else None,
        source=str(params["source"]) if params.get("source") else None,
        prompt_tokens=_int_in(params.get("prompt_tokens"), "prompt_tokens", 0),
        hour=_int_in(params.get("hour"), "hour", 0, 23),
        weekday=weekday,
    )
    return attrs, params.get("ignore_availability") in (True, "1", "on", "true")
