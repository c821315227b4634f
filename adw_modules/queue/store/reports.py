"""Reads for operators and metrics: attempt aggregates, load and spend, events, counts, usage."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from adw_modules.queue.store.base import StoreBase, utcnow
from adw_modules.queue.store.schema import attempts, events, retired_counts, tasks

# What the metrics aggregate (kept here: retention folds pruned rows into the same shape).
# Agent runs last from under a second (an early abort) to hours.
DURATION_BUCKETS_S = (0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0)
TOKEN_KINDS = ("input", "output", "cache_read", "cache_write")
RECOVERED_EVENT = "task.recovered"
# The label columns of each metrics aggregate: its GROUP BY, and the key of a retired_counts row.
METRIC_GROUP_KEYS = {
    "by_target": ("provider", "model", "outcome"),
    "by_duration": ("provider",),
    "by_failover": ("provider", "failover_from"),
}
USAGE_GROUPS = ("provider", "model", "day", "task", "label")
UNLABELLED = "(unlabelled)"


def _duration_rows(buckets: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per provider {provider, n, total, le{i}}, from per (provider, first bucket) counts and sums."""
    out: dict[str, dict[str, Any]] = {}
    for r in buckets:
        row = out.setdefault(
            r["provider"], {"provider": r["provider"], "n": 0, "total": 0.0, **dict.fromkeys(_LE_NAMES, 0)}
        )
        row["n"] += int(r["n"])
        row["total"] += float(r["total"])
        for name in _LE_NAMES[r["bucket"] :]:  # an attempt counts in its bucket and every wider one
            row[name] += int(r["n"])
    return list(out.values())


_LE_NAMES = tuple(f"le{i}" for i in range(len(DURATION_BUCKETS_S)))


def _merge_retired(out: dict[str, Any], retired: Sequence[Any]) -> None:
    """Add retired_counts rows ("group.field", JSON label values, value) to live aggregates."""
    rows: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = {
        group: {tuple(r[k] for k in keys): r for r in out[group]} for group, keys in METRIC_GROUP_KEYS.items()
    }
    for metric, labels, value in retired:
        if metric == "recoveries":
            out["recoveries"] += int(value)
            continue
        group, _, name = metric.partition(".")
        if group not in rows:
            continue
        key = tuple(json.loads(labels))
        row = rows[group].get(key)
        if row is None:
            row = rows[group][key] = dict(zip(METRIC_GROUP_KEYS[group], key, strict=True))
            out[group].append(row)
        as_int = name not in ("cost", "total")
        row[name] = (row.get(name) or 0) + (int(value) if as_int else value)


class ReportsMixin(StoreBase):
    """Aggregates and listings; nothing here changes a task (``add_event`` only appends)."""

    # ------------------------------------------------------------------ metrics
    def _duration_s(self) -> Any:
        """A finished attempt's wall time in seconds, as SQL."""
        if self._sqlite:
            # Stored as naive UTC text "YYYY-MM-DD HH:MM:SS.ffffff".  SQLite's date functions round
            # to milliseconds, so whole seconds and the fraction are taken apart: exact to 1 µs.
            def seconds(col: Any) -> Any:
                whole = sa.cast(sa.func.strftime("%s", sa.func.substr(col, 1, 19)), sa.Integer)
                return whole + sa.func.coalesce(sa.cast(sa.func.substr(col, 20), sa.Float), 0.0)

            return seconds(attempts.c.ended_at) - seconds(attempts.c.started_at)
        return sa.extract("epoch", attempts.c.ended_at - attempts.c.started_at)

    def _aggregate_queries(self, where: Any = None) -> dict[str, Any]:
        """The metrics' GROUP BY queries over the attempts matching ``where`` (all if None)."""
        where = sa.true() if where is None else where
        finished = attempts.c.state == "finished"
        outcome = sa.case((finished, sa.func.coalesce(attempts.c.outcome, "unknown")), else_="running")
        by_target = (
            sa.select(
                attempts.c.provider,
                attempts.c.model,
                outcome.label("outcome"),
                sa.func.count().label("n"),
                # Running attempts' tokens are progress that the final count may revise: a counter
                # must not go down, so only finished attempts count.
                *(
                    sa.func.coalesce(sa.func.sum(sa.case((finished, attempts.c[f"{k}_tokens"]), else_=0)), 0).label(k)
                    for k in TOKEN_KINDS
                ),
                sa.func.coalesce(sa.func.sum(attempts.c.cost_usd), 0.0).label("cost"),
            )
            .where(where)
            .group_by(attempts.c.provider, attempts.c.model, outcome)
        )
        # Each finished attempt's duration is computed once (a MATERIALIZED CTE: inlined, SQLite would
        # evaluate the text-to-seconds expression once per bucket, 16 times a row) and counted in the
        # first bucket it fits; _duration_rows makes the cumulative le{i} counts from those.
        durations = (
            sa.select(attempts.c.provider, self._duration_s().label("d"))
            .where(finished, where)
            .cte("durations")
            .prefix_with("MATERIALIZED")
        )
        d = durations.c.d
        bucket = sa.case(*((d <= b, i) for i, b in enumerate(DURATION_BUCKETS_S)), else_=len(DURATION_BUCKETS_S))
        by_duration = sa.select(
            durations.c.provider,
            bucket.label("bucket"),
            sa.func.count().label("n"),
            sa.func.coalesce(sa.func.sum(d), 0.0).label("total"),
        ).group_by(durations.c.provider, bucket)
        by_failover = (
            sa.select(attempts.c.provider, attempts.c.failover_from, sa.func.count().label("n"))
            .where(attempts.c.failover_from.is_not(None), where)
            .group_by(attempts.c.provider, attempts.c.failover_from)
        )
        return {"by_target": by_target, "by_duration": by_duration, "by_failover": by_failover}

    def attempt_aggregates(self) -> dict[str, Any]:
        """Attempts grouped for metrics, in one read transaction (one snapshot on SQLite's WAL):
        ``by_target`` (provider, model, outcome — "running" for live ones — count, token sums, cost),
        ``by_duration`` (per provider: count, total seconds, ``le{i}`` cumulative counts in
        DURATION_BUCKETS_S), ``by_failover`` (provider, failover_from, count) and ``recoveries``
        (RECOVERED_EVENT events).

        Totals include what retention pruned (``retired_counts``), so they never go down."""
        recovered = sa.select(sa.func.count()).select_from(events).where(events.c.kind == RECOVERED_EVENT)
        with self._read() as conn:
            out: dict[str, Any] = self._aggregate_rows(conn)
            out["recoveries"] = int(conn.execute(recovered).scalar_one())
            retired = conn.execute(sa.select(retired_counts)).all()
        _merge_retired(out, retired)
        return out

    def _aggregate_rows(self, conn: Connection, where: Any = None) -> dict[str, list[dict[str, Any]]]:
        """The rows of ``_aggregate_queries``, with ``by_duration`` in its per-provider shape."""
        queries = self._aggregate_queries(where)
        out = {group: [dict(r) for r in conn.execute(q).mappings()] for group, q in queries.items()}
        out["by_duration"] = _duration_rows(out["by_duration"])
        return out

    # ------------------------------------------------------------------ load and spend
    def running_count_by_provider(self) -> dict[str, int]:
        query = (
            sa.select(attempts.c.provider, sa.func.count())
            .where(attempts.c.state == "running")
            .group_by(attempts.c.provider)
        )
        with self._read() as conn:
            return {p: int(n) for p, n in conn.execute(query)}

    def attempts_started_since(self, since: dt.datetime) -> dict[str, int]:
        """Attempts per provider with started_at >= since (for requests-per-minute limits)."""
        query = (
            sa.select(attempts.c.provider, sa.func.count())
            .where(attempts.c.started_at >= since)
            .group_by(attempts.c.provider)
        )
        with self._read() as conn:
            return {p: int(n) for p, n in conn.execute(query)}

    def spend_since(self, since: dt.datetime) -> dict[str, float]:
        """Known cost per provider of attempts started at or after ``since`` (unknown costs count 0)."""
        query = (
            sa.select(attempts.c.provider, sa.func.coalesce(sa.func.sum(attempts.c.cost_usd), 0.0))
            .where(attempts.c.started_at >= since)
            .group_by(attempts.c.provider)
        )
        with self._read() as conn:
            return {p: float(c) for p, c in conn.execute(query)}

    # ------------------------------------------------------------------ events
    def add_event(
        self,
        kind: str,
        message: str,
        *,
        task_id: int | None = None,
        attempt_id: int | None = None,
        provider: str | None = None,
        data: Mapping[str, Any] | None = None,
        now: dt.datetime | None = None,
    ) -> None:
        stmt = sa.insert(events).values(
            at=now or utcnow(),
            kind=kind,
            message=message,
            task_id=task_id,
            attempt_id=attempt_id,
            provider=provider,
            data=None if data is None else dict(data),
        )
        with self._write() as conn:
            conn.execute(stmt)

    def events(self, task_id: int | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Newest first; dicts with id, at, kind, message, task_id, attempt_id, provider, data."""
        query = sa.select(events).order_by(events.c.id.desc()).limit(limit)
        if task_id is not None:
            query = query.where(events.c.task_id == task_id)
        with self._read() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    # ------------------------------------------------------------------ reports
    def counts_by_state_priority(self) -> dict[str, dict[str, int]]:
        """state -> priority -> number of tasks (only non-zero counts appear)."""
        query = sa.select(tasks.c.state, tasks.c.priority, sa.func.count()).group_by(tasks.c.state, tasks.c.priority)
        out: dict[str, dict[str, int]] = {}
        with self._read() as conn:
            for state, priority, n in conn.execute(query):
                out.setdefault(state, {})[priority] = int(n)
        return out

    def usage(self, by: str, since: dt.datetime | None = None) -> list[dict[str, Any]]:
        """Token and cost totals of attempts (started at or after ``since``), grouped.

        ``by``: provider | model | day (UTC date, YYYY-MM-DD) | task (task id as text) |
        label (each label of the task; a task with two labels counts in both, one with
        none under "(unlabelled)").  Rows {key, attempts, input_tokens, output_tokens,
        cache_read_tokens, cache_write_tokens, cost_usd}, sorted by key.
        """
        if by not in USAGE_GROUPS:
            raise ValueError(f"usage: by must be one of {', '.join(USAGE_GROUPS)}, not {by!r}")
        if by == "model":
            return self._usage_by_model(since)
        key = self._usage_key(by)
        sums = [
            sa.func.count().label("attempts"),
            *(
                sa.func.coalesce(sa.func.sum(attempts.c[c]), 0).label(c)
                for c in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
            ),
            sa.func.coalesce(sa.func.sum(attempts.c.cost_usd), 0.0).label("cost_usd"),
        ]
        query = sa.select(key.label("key"), *sums).group_by(key)
        if by == "label":
            # Grouped by the task's whole label list (few distinct ones), expanded per label below.
            query = query.select_from(attempts.outerjoin(tasks, tasks.c.id == attempts.c.task_id))
        if since is not None:
            query = query.where(attempts.c.started_at >= since)
        with self._read() as conn:
            rows = [dict(r) for r in conn.execute(query).mappings()]
        if by == "label":
            rows = _by_label(rows)
        return sorted((_usage_row(r) for r in rows), key=lambda r: r["key"])

    def _usage_by_model(self, since: dt.datetime | None) -> list[dict[str, Any]]:
        """Per model, from each attempt's per-model breakdown (a haiku side call counts under
        haiku, not under the attempt's target); an attempt without one counts under its model.
        An attempt counts once under each model it used."""
        columns = [attempts.c.model, attempts.c.model_usage, *(attempts.c[c] for c in _TOKEN_COLUMNS)]
        query = sa.select(*columns, attempts.c.cost_usd)
        if since is not None:
            query = query.where(attempts.c.started_at >= since)
        merged: dict[str, dict[str, Any]] = {}
        with self._read() as conn:
            for row in conn.execute(query).mappings():
                parts = row["model_usage"] or {row["model"]: row}
                for model, part in parts.items():
                    acc = merged.setdefault(
                        model, {"key": model, "attempts": 0, "cost_usd": 0.0, **dict.fromkeys(_TOKEN_COLUMNS, 0)}
                    )
                    acc["attempts"] += 1
                    acc["cost_usd"] += part.get("cost_usd") or 0.0
                    for column in _TOKEN_COLUMNS:
                        acc[column] += int(part.get(column) or 0)
        return sorted((_usage_row(r) for r in merged.values()), key=lambda r: r["key"])

    def _usage_key(self, by: str) -> Any:
        """The column usage groups by (the task's label list for ``label``: expanded afterwards)."""
        if by == "provider":
            return attempts.c.provider
        if by == "model":
            return attempts.c.model
        if by == "day":
            if self._sqlite:
                return sa.func.date(attempts.c.started_at)  # stored as naive UTC text
            return sa.func.to_char(sa.func.timezone("UTC", attempts.c.started_at), "YYYY-MM-DD")
        if by == "label":
            return tasks.c.labels
        return attempts.c.task_id


_TOKEN_COLUMNS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")


def _by_label(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Usage rows keyed by a task's label list, summed per label (a task with none: UNLABELLED)."""
    # Expanding JSON arrays differs per backend (json_each vs jsonb_array_elements); the distinct
    # label lists are few enough to expand here.
    merged: dict[str, dict[str, Any]] = {}
    for row in rows:
        for label in dict.fromkeys(row["key"] or [UNLABELLED]):
            acc = merged.setdefault(label, {"key": label, **{k: 0 for k in row if k != "key"}})
            for k, v in row.items():
                if k != "key":
                    acc[k] += v
    return list(merged.values())


def _usage_row(r: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "key": str(r["key"]),
        "attempts": int(r["attempts"]),
        "input_tokens": int(r["input_tokens"]),
        "output_tokens": int(r["output_tokens"]),
        "cache_read_tokens": int(r["cache_read_tokens"]),
        "cache_write_tokens": int(r["cache_write_tokens"]),
        "cost_usd": float(r["cost_usd"]),
    }
