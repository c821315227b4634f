"""Reads for the web console: a filtered task page (keyset), spend series, a change marker.

Nothing here writes.  The task page walks the ``(created_at, id)`` index newest first and
continues after the last row shown (keyset), so page 2 000 of 100 000 tasks costs what page
1 does; OFFSET would read every row before it.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from adw_modules.queue.store.reports import UNLABELLED, ReportsMixin
from adw_modules.queue.store.rows import task_record
from adw_modules.queue.store.schema import UTCDateTime, attempts, events, leader_leases, provider_state, tasks
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

    def usage_series(
        self, bucket: str, by: str, since: dt.datetime, until: dt.datetime | None = None
    ) -> list[dict[str, Any]]:
        """Tokens and cost of attempts started since ``since``, per ``bucket`` (UTC day
        "YYYY-MM-DD" or hour "YYYY-MM-DD HH:00") and ``by`` (provider; model, from each
        attempt's per-model breakdown; label, an attempt under each of its task's labels).
        Rows {bucket, key, attempts, cost_usd, tokens}, sorted by bucket then key.

        Summed by the database (JSON expanded there too): 30 days of 100,000 attempts read
        row by row into Python took ~400 ms a series (bench/web_at_scale.py)."""
        if bucket not in SERIES_BUCKETS or by not in SERIES_GROUPS:
            raise ValueError(f"usage_series: bucket in {SERIES_BUCKETS}, by in {SERIES_GROUPS}")
        sql = _series_sql(self.dialect, bucket, by, until is not None)
        query = sa.text(sql).bindparams(sa.bindparam("since", type_=UTCDateTime()))
        params: dict[str, Any] = {"since": since, **({"unlabelled": UNLABELLED} if by == "label" else {})}
        if until is not None:
            query = query.bindparams(sa.bindparam("until", type_=UTCDateTime()))
            params["until"] = until
        merged: dict[tuple[str, str], dict[str, Any]] = {}
        with self._read() as conn:
            for slot, key, n, cost, tokens in conn.execute(query, params):
                acc = merged.setdefault(
                    (slot, str(key)), {"bucket": slot, "key": str(key), "attempts": 0, "cost_usd": 0.0, "tokens": 0}
                )
                acc["attempts"] += int(n)
                acc["cost_usd"] += float(cost or 0.0)
                acc["tokens"] += int(tokens or 0)
        return [merged[k] for k in sorted(merged)]

    def spend_fingerprint(self, since: dt.datetime, until: dt.datetime) -> tuple[int, float]:
        """(attempts, known cost) started in [since, until): from the (started_at, provider,
        cost_usd) index alone; the console's spend cache sees a settled hour change by it."""
        query = sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(attempts.c.cost_usd), 0.0)).where(
            attempts.c.started_at >= since, attempts.c.started_at < until
        )
        with self._read() as conn:
            n, cost = conn.execute(query).one()
        return int(n), round(float(cost), 9)

    def earliest_running_start(self) -> dt.datetime | None:
        """When the oldest running attempt started (its cost and tokens are still to come).
        The live few are read by the (state, id) index and compared here: ``min(started_at)``
        made SQLite walk the started_at index from its start (~180 ms at 100,000 attempts)."""
        query = sa.select(attempts.c.started_at).where(attempts.c.state == "running")
        with self._read() as conn:
            starts = [row[0] for row in conn.execute(query)]
        return min(starts, default=None)

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


_SERIES_TOKENS = "(a.input_tokens + a.output_tokens + a.cache_read_tokens + a.cache_write_tokens)"
_SERIES_COST = "coalesce(a.cost_usd, 0)"


def _series_sql(dialect: str, bucket: str, by: str, until: bool) -> str:
    """One GROUP BY (bucket, key) statement; for ``model``, attempts with a per-model breakdown
    (its entries' own cost and tokens) and, UNION ALL, those without (the attempt's model)."""
    sqlite = dialect == "sqlite"
    if sqlite:  # naive UTC text "YYYY-MM-DD HH:MM:SS[.ffffff]" (schema.UTCDateTime)
        slot = "substr(a.started_at, 1, 10)" if bucket == "day" else "substr(a.started_at, 1, 13) || '\\:00'"
    else:
        fmt = "YYYY-MM-DD" if bucket == "day" else "YYYY-MM-DD HH24"
        slot = f"to_char(a.started_at AT TIME ZONE 'UTC', '{fmt}')" + ("" if bucket == "day" else " || '\\:00'")
    head = f"SELECT {slot} AS slot, {{key}} AS key, count(*) AS n, sum({{cost}}) AS cost, sum({{tokens}}) AS tokens"
    since = "a.started_at >= :since" + (" AND a.started_at < :until" if until else "")
    tail = "GROUP BY 1, 2"  # by position: json_each has a column named key of its own
    plain = head.format(key="{key}", cost=_SERIES_COST, tokens=_SERIES_TOKENS)
    if by == "provider":
        return f"{plain.format(key='a.provider')} FROM attempts a WHERE {since} {tail}"
    if by == "label":
        labels = "json_each(t.labels) AS l ON true"
        if not sqlite:
            labels = "LATERAL jsonb_array_elements_text(t.labels) AS l(value) ON true"
        join = f"LEFT JOIN tasks t ON t.id = a.task_id LEFT JOIN {labels}"
        return f"{plain.format(key='coalesce(l.value, :unlabelled)')} FROM attempts a {join} WHERE {since} {tail}"
    if sqlite:
        part = "coalesce(json_extract(m.value, '$.{}'), 0)"
        each = "json_each(a.model_usage) AS m"
        has = "(json_type(a.model_usage) = 'object' AND a.model_usage != '{}')"
    else:
        part = "coalesce((m.value ->> '{}')::numeric, 0)"
        each = "LATERAL jsonb_each(a.model_usage) AS m(key, value)"
        has = "(jsonb_typeof(a.model_usage) = 'object' AND a.model_usage != '{}'::jsonb)"
    tokens = " + ".join(part.format(c) for c in _TOKENS)
    broken_down = head.format(key="m.key", cost=part.format("cost_usd"), tokens=f"({tokens})")
    whole = plain.format(key="a.model")
    return (
        f"{broken_down} FROM attempts a CROSS JOIN {each} WHERE {since} AND {has} {tail} UNION ALL "
        f"{whole} FROM attempts a WHERE {since} AND NOT coalesce({has}, false) {tail}"
    )
