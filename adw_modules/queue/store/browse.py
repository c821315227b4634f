"""Reads for the web console: a filtered task page (keyset), spend series, a change marker.

Nothing here writes.  The task page walks the ``(created_at, id)`` index newest first and
continues after the last row shown (keyset), so page 2 000 of 100 000 tasks costs what page
1 does; OFFSET would read every row before it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from adw_modules.queue.store.reports import UNLABELLED, ReportsMixin
from adw_modules.queue.store.rows import task_record
from adw_modules.queue.store.schema import attempts, events, leader_leases, provider_state, tasks
from adw_modules.queue.tasks import Task

SERIES_GROUPS = ("provider", "model", "label")
SERIES_BUCKETS = ("day", "hour")
_TOKENS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")


@dataclass(frozen=True)
class TaskFilter:
    """What the tasks page narrows to; every field optional."""

    state: str | None = None
    source: str | None = None
    repo: str | None = None
    label: str | None = None
    provider: str | None = None  # tasks with an attempt on it
    text: str | None = None  # in the title


def _like_escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class BrowseMixin(ReportsMixin):
    """The console's reads."""

    def task_page(
        self, flt: TaskFilter, after: tuple[dt.datetime, int] | None = None, limit: int = 50
    ) -> tuple[list[Task], tuple[dt.datetime, int] | None]:
        """Newest first, ``limit`` tasks matching ``flt`` older than ``after`` (created_at, id);
        and the key to pass as ``after`` for the next page (None on the last page)."""
        query = sa.select(tasks).order_by(tasks.c.created_at.desc(), tasks.c.id.desc()).limit(limit + 1)
        for column in ("state", "source", "repo"):
            value = getattr(flt, column)
            if value:
                query = query.where(tasks.c[column] == value)
        if flt.label:
            spelled = json.dumps(flt.label, ensure_ascii=self._sqlite)  # how each backend writes it out
            query = query.where(sa.cast(tasks.c.labels, sa.Text).like(f"%{_like_escaped(spelled)}%", escape="\\"))
        if flt.text:
            query = query.where(tasks.c.title.ilike(f"%{_like_escaped(flt.text)}%", escape="\\"))
        if flt.provider:
            on_it = sa.select(attempts.c.id).where(attempts.c.task_id == tasks.c.id)
            query = query.where(on_it.where(attempts.c.provider == flt.provider).exists())
        if after is not None:
            created, task_id = after
            query = query.where(
                sa.or_(tasks.c.created_at < created, sa.and_(tasks.c.created_at == created, tasks.c.id < task_id))
            )
        with self._read() as conn:
            rows = [task_record(r) for r in conn.execute(query).mappings()]
        if len(rows) <= limit:
            return rows, None
        last = rows[limit - 1]
        return rows[:limit], (last.created_at, last.id)

    def usage_series(self, bucket: str, by: str, since: dt.datetime) -> list[dict[str, Any]]:
        """Tokens and cost of attempts started since ``since``, per ``bucket`` (UTC day
        "YYYY-MM-DD" or hour "YYYY-MM-DD HH:00") and ``by`` (provider; model, from each
        attempt's per-model breakdown; label, an attempt under each of its task's labels).
        Rows {bucket, key, attempts, cost_usd, tokens}, sorted by bucket then key."""
        if bucket not in SERIES_BUCKETS or by not in SERIES_GROUPS:
            raise ValueError(f"usage_series: bucket in {SERIES_BUCKETS}, by in {SERIES_GROUPS}")
        columns = [attempts.c.started_at, attempts.c.provider, attempts.c.model, attempts.c.model_usage]
        query = (
            sa.select(*columns, *(attempts.c[c] for c in _TOKENS), attempts.c.cost_usd, tasks.c.labels)
            .select_from(attempts.outerjoin(tasks, tasks.c.id == attempts.c.task_id))
            .where(attempts.c.started_at >= since)
        )
        merged: dict[tuple[str, str], dict[str, Any]] = {}
        with self._read() as conn:
            for row in conn.execute(query).mappings():
                when = row["started_at"].astimezone(dt.UTC)
                slot = when.strftime("%Y-%m-%d") if bucket == "day" else when.strftime("%Y-%m-%d %H:00")
                for key, cost, tokens in _series_parts(row, by):
                    acc = merged.setdefault(
                        (slot, key), {"bucket": slot, "key": key, "attempts": 0, "cost_usd": 0.0, "tokens": 0}
                    )
                    acc["attempts"] += 1
                    acc["cost_usd"] += cost
                    acc["tokens"] += tokens
        return [merged[k] for k in sorted(merged)]

    def change_marker(self) -> tuple[Any, ...]:
        """Changes whenever a page could: a task's state or a new task, an event, a running
        attempt's tokens, a provider's health.  A handful of index reads (the console's live
        stream asks twice a second, once for all its clients)."""
        running_tokens = sa.select(
            sa.func.count(), sa.func.coalesce(sa.func.sum(attempts.c.input_tokens + attempts.c.output_tokens), 0)
        ).where(attempts.c.state == "running")
        with self._read() as conn:
            last_event = conn.execute(sa.select(sa.func.max(events.c.id))).scalar()
            last_task = conn.execute(sa.select(sa.func.max(tasks.c.id))).scalar()
            last_attempt = conn.execute(sa.select(sa.func.max(attempts.c.id))).scalar()
            running = tuple(conn.execute(running_tokens).one())
            health = conn.execute(sa.select(sa.func.max(provider_state.c.updated_at))).scalar()
            states = tuple(conn.execute(sa.select(tasks.c.state, sa.func.count()).group_by(tasks.c.state)).all())
        return (last_event, last_task, last_attempt, running, str(health), states)

    def leaders(self) -> dict[str, dict[str, Any]]:
        """Singleton duties (e.g. "github") and who holds each, with when the hold expires."""
        with self._read() as conn:
            rows = conn.execute(sa.select(leader_leases)).mappings().all()
        return {r["name"]: {"owner": r["owner"], "expires_at": r["expires_at"].isoformat()} for r in rows}

    def recent_durations(self, per_provider: int = 50, rows: int = 1000) -> dict[str, list[float]]:
        """Wall seconds of each provider's latest finished attempts (newest first), from the
        latest ``rows`` finished attempts of all (a bounded read whatever the store's size)."""
        query = (
            sa.select(attempts.c.provider, attempts.c.started_at, attempts.c.ended_at)
            .where(attempts.c.state == "finished")
            .order_by(attempts.c.id.desc())
            .limit(rows)
        )
        out: dict[str, list[float]] = {}
        with self._read() as conn:
            for provider, started, ended in conn.execute(query):
                seen = out.setdefault(provider, [])
                if ended is not None and len(seen) < per_provider:
                    seen.append((ended - started).total_seconds())
        return out


def _series_parts(row: Mapping[Any, Any], by: str) -> list[tuple[str, float, int]]:
    """(key, cost, tokens) of one attempt under ``by``."""
    tokens = sum(int(row[c] or 0) for c in _TOKENS)
    cost = float(row["cost_usd"] or 0.0)
    if by == "provider":
        return [(row["provider"], cost, tokens)]
    if by == "label":
        return [(str(label), cost, tokens) for label in dict.fromkeys(row["labels"] or [UNLABELLED])]
    parts = row["model_usage"] or {row["model"]: row}
    return [
        (str(model), float(p.get("cost_usd") or 0.0), sum(int(p.get(c) or 0) for c in _TOKENS))
        for model, p in parts.items()
    ]
