"""Retention: deleting old tasks, attempts and events, keeping their metric totals
(``retired_counts``) and their sources' memory (``retired_sources``)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Collection
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from adw_modules.queue.store.base import utcnow
from adw_modules.queue.store.reports import METRIC_GROUP_KEYS, RECOVERED_EVENT, ReportsMixin
from adw_modules.queue.store.schema import attempts, events, retired_counts, retired_sources, source_state, tasks
from adw_modules.queue.tasks import TaskState


class PruningMixin(ReportsMixin):
    """Pruning folds the doomed rows into the metrics' aggregate shape, hence the reports base."""

    def _retire_counts(self, conn: Connection, attempts_where: Any, events_where: Any) -> None:
        """Fold the aggregates of attempts and events about to be deleted into retired_counts."""
        totals: dict[tuple[str, str], float] = {}
        if attempts_where is not None:
            for group, rows in self._aggregate_rows(conn, attempts_where).items():
                keys = METRIC_GROUP_KEYS[group]
                for row in rows:  # one row per label set: grouped by those keys
                    labels = json.dumps([row[k] for k in keys])
                    totals.update({(f"{group}.{name}", labels): v for name, v in row.items() if name not in keys and v})
        if events_where is not None:
            recovered = sa.select(sa.func.count()).where(events_where, events.c.kind == RECOVERED_EVENT)
            n = conn.execute(recovered.select_from(events)).scalar_one()
            if n:
                totals[("recoveries", "[]")] = n
        for (metric, labels), value in sorted(totals.items()):
            ins = self._insert(retired_counts).values(metric=metric, labels=labels, value=float(value))
            conn.execute(
                ins.on_conflict_do_update(
                    index_elements=["metric", "labels"], set_={"value": retired_counts.c.value + float(value)}
                )
            )

    # ------------------------------------------------------------------ retention
    def prune(self, finished_before: dt.datetime | None, events_before: dt.datetime | None) -> dict[str, int]:
        """Delete terminal tasks last changed before ``finished_before`` (with their attempts, events
        and source state) and events older than ``events_before``; what the metrics counted and what
        the sources remembered is kept first (retired_counts, retired_sources)."""
        out = {"tasks": 0, "events": 0}
        terminal = [TaskState.SUCCEEDED.value, TaskState.FAILED.value, TaskState.CANCELLED.value]
        with self._write() as conn:
            if finished_before is not None:
                doomed = sa.select(tasks.c.id).where(tasks.c.state.in_(terminal), tasks.c.updated_at < finished_before)
                self._retire_sources(conn, doomed)
                self._retire_counts(conn, attempts.c.task_id.in_(doomed), events.c.task_id.in_(doomed))
                # SQLite enforces ON DELETE CASCADE only with foreign keys on (set per connection); do
                # the children explicitly so the result does not depend on that.
                conn.execute(sa.delete(events).where(events.c.task_id.in_(doomed)))
                conn.execute(sa.delete(source_state).where(source_state.c.task_id.in_(doomed)))
                conn.execute(sa.delete(attempts).where(attempts.c.task_id.in_(doomed)))
                out["tasks"] = conn.execute(sa.delete(tasks).where(tasks.c.id.in_(doomed))).rowcount
            if events_before is not None:
                self._retire_counts(conn, None, events.c.at < events_before)
                out["events"] += conn.execute(sa.delete(events).where(events.c.at < events_before)).rowcount
        return out

    def _retire_sources(self, conn: Connection, doomed: Any) -> None:
        """Keep what the sources remembered about the doomed tasks (source, external id, end state,
        source state), so deleting a task never makes its source's old trigger look new."""
        rows = conn.execute(
            sa.select(tasks.c.source, tasks.c.external_id, tasks.c.state, source_state.c.data)
            .select_from(tasks.outerjoin(source_state, source_state.c.task_id == tasks.c.id))
            .where(tasks.c.id.in_(doomed))
        ).all()
        now = utcnow()
        for source, external_id, state, data in rows:
            values = {"state": state, "data": dict(data or {}), "retired_at": now}
            ins = self._insert(retired_sources).values(source=source, external_id=external_id, **values)
            conn.execute(ins.on_conflict_do_update(index_elements=["source", "external_id"], set_=values))

    def retired_source(self, source: str, external_id: str) -> dict[str, Any] | None:
        """For a key whose task retention deleted: {"state", "data" (its source state), "retired_at"}."""
        key = (retired_sources.c.source == source) & (retired_sources.c.external_id == external_id)
        with self._read() as conn:
            row = conn.execute(sa.select(retired_sources).where(key)).mappings().first()
        if row is None:
            return None
        return {"state": row["state"], "data": dict(row["data"]), "retired_at": row["retired_at"]}

    def finished_attempt_logs(self, ended_before: dt.datetime, host: str) -> list[tuple[int, str]]:
        """(attempt id, log path) of this host's attempts that ended before the cutoff and still name a log."""
        q = sa.select(attempts.c.id, attempts.c.log_path).where(
            attempts.c.ended_at < ended_before, attempts.c.log_path.is_not(None), attempts.c.host == host
        )
        with self._read() as conn:
            return [(r[0], r[1]) for r in conn.execute(q)]

    def forget_attempt_logs(self, attempt_ids: Collection[int]) -> None:
        if attempt_ids:
            with self._write() as conn:
                conn.execute(sa.update(attempts).where(attempts.c.id.in_(list(attempt_ids))).values(log_path=None))
