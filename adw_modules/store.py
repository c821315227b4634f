"""The durable store behind the coordinator: every SQL statement the service runs lives here.

Backends: SQLite in WAL mode (the embedded default, one host) and PostgreSQL (several
coordinators on several hosts).  Both run the same contract (tests/store/).

Guarantees callers rely on:

* Each public method is one short transaction: it commits entirely or not at all.
* Claiming is atomic: on PostgreSQL a ``FOR UPDATE SKIP LOCKED`` CTE feeds an
  ``UPDATE … RETURNING``; on SQLite (where SQLAlchemy silently drops ``FOR UPDATE``)
  write transactions start with ``BEGIN IMMEDIATE``, so the single-statement
  compare-and-set ``UPDATE … WHERE id = (SELECT … LIMIT 1) AND state IN (…)`` runs
  under SQLite's one writer lock.
* Every write about a running attempt is fenced on owner + attempt id.  A fenced-out
  write changes nothing and the method returns False / None (never raises for that):
  the caller has lost the lease and must stop its worker and drop the result.
* "Never two live attempts of one task" is a partial unique index, so it holds even
  against a buggy caller.
* All datetimes are timezone-aware UTC in and out; naive ones are refused (ValueError
  wrapped in sqlalchemy.exc.StatementError).

Lock order on PostgreSQL is always tasks row first, then attempts rows, so a finishing
owner and a reaper cannot deadlock.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection, Engine, RowMapping
from sqlalchemy.exc import IntegrityError

from adw_modules.outcomes import Usage
from adw_modules.store_schema import (
    attempts,
    coordinators,
    events,
    leader_leases,
    provider_state,
    retired_counts,
    retired_sources,
    source_state,
    tasks,
)
from adw_modules.tasks import (
    PRIORITY_RANK,
    Attempt,
    AttemptEnd,
    AttemptStart,
    CircuitState,
    NewTask,
    ProviderState,
    Task,
    TaskState,
    Transition,
)

UTC = dt.UTC
# What the metrics aggregate (kept here: retention folds pruned rows into the same shape).
# Agent runs last from under a second (an early abort) to hours.
DURATION_BUCKETS_S = (0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0)
TOKEN_KINDS = ("input", "output", "cache_read", "cache_write")
RECOVERED_EVENT = "task.recovered"
_GROUP_KEYS = {
    "by_target": ("provider", "model", "outcome"),
    "by_duration": ("provider",),
    "by_failover": ("provider", "failover_from"),
}
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_S = 30.0
# Any fixed 64-bit number: the advisory lock that serialises migrations across processes.
PG_MIGRATION_LOCK_KEY = 0x0ADC_0057_0E5E
REAPED_MESSAGE = "lease expired: coordinator {owner} stopped heartbeating"
USAGE_GROUPS = ("provider", "model", "day", "task", "label")
UNLABELLED = "(unlabelled)"

_CLAIMABLE = (TaskState.QUEUED.value, TaskState.RETRY_WAIT.value)
_REQUEUEABLE = (
    TaskState.QUEUED.value,
    TaskState.RETRY_WAIT.value,
    TaskState.SUCCEEDED.value,
    TaskState.FAILED.value,
    TaskState.CANCELLED.value,
)
_RUNNING = TaskState.RUNNING.value


class _FencedOut(Exception):
    """Raised inside a transaction to roll it back when a later fenced statement misses."""


def _utcnow() -> dt.datetime:
    return dt.datetime.now(UTC)


def alembic_config(url: str | None = None, connection: Connection | None = None) -> Config:
    """An Alembic Config for the packaged migrations (no alembic.ini needed)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Revision modules must be importable names for mypy (no leading digit).
    cfg.set_main_option("file_template", "rev_%%(rev)s_%%(slug)s")
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def migrate(engine: Engine) -> None:
    """Bring the schema to head, safely when several processes start at once.

    The whole upgrade runs in one transaction that first takes a cross-process lock:
    ``pg_advisory_xact_lock`` on PostgreSQL, SQLite's write lock (``BEGIN IMMEDIATE``)
    otherwise.  Whoever comes second waits, then finds the schema at head.
    """
    if engine.dialect.name == "sqlite":
        engine = engine.execution_options(adw_sqlite_begin="IMMEDIATE")
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(PG_MIGRATION_LOCK_KEY)))
        command.upgrade(alembic_config(connection=conn), "head")


def _make_engine(url: str) -> Engine:
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            raise ValueError("the store needs a SQLite file (WAL and several connections), not :memory:")
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            parsed,
            # The pool hands a connection to one thread at a time; sqlite3's own check is redundant.
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S},
        )
        _configure_sqlite(engine)
        return engine
    if parsed.get_backend_name() == "postgresql":
        return sa.create_engine(
            parsed,
            pool_pre_ping=True,
            # Server-side date grouping (usage by day) must not depend on the server's zone.
            connect_args={"options": "-c timezone=UTC"},
        )
    raise ValueError(f"unsupported store URL {parsed.render_as_string(hide_password=True)!r}")


def _enable_wal(cur: Any) -> None:
    """Switch a new database to WAL.  The switch needs an exclusive lock, and SQLite answers
    "database is locked" at once (no busy wait) when several processes open a fresh file
    together, so retry with backoff up to the busy timeout.  Once the file is WAL this is a no-op."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    delay = 0.01
    while True:
        try:
            cur.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(0.5, delay * 2)


def _configure_sqlite(engine: Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control away from pysqlite (which defers BEGIN and never
        # issues IMMEDIATE); SQLAlchemy's "begin" event below issues it instead.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
            _enable_wal(cur)
            cur.execute("PRAGMA foreign_keys = ON")
        finally:
            cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # IMMEDIATE for writers: a deferred transaction that reads and then writes can
        # fail with SQLITE_BUSY at once (no busy wait) if another writer got in between.
        mode = conn.get_execution_options().get("adw_sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


# --------------------------------------------------------------------------- row mapping
def _merge_retired(out: dict[str, Any], retired: Sequence[Any]) -> None:
    """Add retired_counts rows ("group.field", JSON label values, value) to live aggregates."""
    rows: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = {
        group: {tuple(r[k] for k in keys): r for r in out[group]} for group, keys in _GROUP_KEYS.items()
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
            row = rows[group][key] = dict(zip(_GROUP_KEYS[group], key, strict=True))
            out[group].append(row)
        as_int = name not in ("cost", "total")
        row[name] = (row.get(name) or 0) + (int(value) if as_int else value)


def _task(row: RowMapping) -> Task:
    return Task(
        id=row["id"],
        source=row["source"],
        external_id=row["external_id"],
        title=row["title"],
        body=row["body"],
        labels=list(row["labels"] or []),
        priority=row["priority"],
        repo=row["repo"],
        url=row["url"],
        state=TaskState(row["state"]),
        retry_count=row["retry_count"],
        attempt_count=row["attempt_count"],
        round_started_at=row["round_started_at"],
        not_before=row["not_before"],
        wait_reason=row["wait_reason"],
        last_error=row["last_error"],
        last_error_kind=row["last_error_kind"],
        owner=row["owner"],
        lease_expires_at=row["lease_expires_at"],
        current_attempt_id=row["current_attempt_id"],
        excluded_targets=list(row["excluded_targets"] or []),
        cancel_requested=bool(row["cancel_requested"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _attempt(row: RowMapping) -> Attempt:
    return Attempt(
        id=row["id"],
        task_id=row["task_id"],
        number=row["number"],
        provider=row["provider"],
        model=row["model"],
        rule=row["rule"],
        routing=dict(row["routing"] or {}),
        config_fingerprint=row["config_fingerprint"],
        owner=row["owner"],
        host=row["host"],
        pid=row["pid"],
        pgid=row["pgid"],
        create_time=row["create_time"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        state=row["state"],
        outcome=row["outcome"],
        error_kind=row["error_kind"],
        error_message=row["error_message"],
        input_tokens=row["input_tokens"],
        output_tokens=row["output_tokens"],
        cache_read_tokens=row["cache_read_tokens"],
        cache_write_tokens=row["cache_write_tokens"],
        cost_usd=row["cost_usd"],
        cost_source=row["cost_source"],
        log_path=row["log_path"],
        session_id=row["session_id"],
        result_text=row["result_text"],
        failover_from=row["failover_from"],
    )


def _provider_state(row: RowMapping) -> ProviderState:
    return ProviderState(
        provider=row["provider"],
        circuit=CircuitState(row["circuit"]),
        cooldown_until=row["cooldown_until"],
        cooldown_reason=row["cooldown_reason"],
        trips=row["trips"],
        consecutive_failures=row["consecutive_failures"],
        probe_attempt_id=row["probe_attempt_id"],
        disabled_reason=row["disabled_reason"],
        updated_at=row["updated_at"],
        recent=[bool(x) for x in row["recent"] or []],
    )


def _provider_values(state: ProviderState, now: dt.datetime) -> dict[str, Any]:
    return {
        "circuit": CircuitState(state.circuit).value,
        "cooldown_until": state.cooldown_until,
        "cooldown_reason": state.cooldown_reason,
        "trips": state.trips,
        "consecutive_failures": state.consecutive_failures,
        "probe_attempt_id": state.probe_attempt_id,
        "disabled_reason": state.disabled_reason,
        "updated_at": state.updated_at or now,
        "recent": [bool(x) for x in state.recent],
    }


def _end_values(end: AttemptEnd, now: dt.datetime) -> dict[str, Any]:
    return {
        "state": "finished",
        "ended_at": now,
        "outcome": end.outcome,
        "error_kind": end.error_kind,
        "error_message": end.error_message,
        "input_tokens": end.input_tokens,
        "output_tokens": end.output_tokens,
        "cache_read_tokens": end.cache_read_tokens,
        "cache_write_tokens": end.cache_write_tokens,
        "cost_usd": end.cost_usd,
        "cost_source": end.cost_source,
        "log_path": end.log_path,
        "session_id": end.session_id,
        "result_text": end.result_text,
    }


def _crashed_values(message: str, now: dt.datetime) -> dict[str, Any]:
    return {
        "state": "finished",
        "ended_at": now,
        "outcome": "crashed",
        "error_kind": "crashed",
        "error_message": message,
    }


# Clears everything that ties a task to an owner; the "lease" check constraint demands it
# whenever a task leaves the running state.
_UNOWNED: dict[str, Any] = {"owner": None, "lease_expires_at": None, "current_attempt_id": None}


class Store:
    """The coordinator's durable state.  Thread-safe: share one Store per process."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._sqlite = engine.dialect.name == "sqlite"
        # Write transactions on SQLite take the write lock up front (see _configure_sqlite).
        self._writer = engine.execution_options(adw_sqlite_begin="IMMEDIATE") if self._sqlite else engine

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def open(cls, url: str) -> Store:
        """Connect to ``sqlite:///path`` or ``postgresql+psycopg://…`` and migrate to head."""
        engine = _make_engine(url)
        try:
            migrate(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine)

    def close(self) -> None:
        """Close every pooled connection; the Store is unusable afterwards."""
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def engine(self) -> Engine:
        """The underlying engine (tests and admin tools; the coordinator uses the methods)."""
        return self._engine

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._writer.begin() as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._engine.begin() as conn:
            yield conn

    def _insert(self, table: sa.Table) -> Any:
        """A dialect INSERT, which has ON CONFLICT on both backends."""
        return sqlite_dialect.insert(table) if self._sqlite else pg_dialect.insert(table)

    # ------------------------------------------------------------------ tasks
    def upsert_task(self, new: NewTask) -> tuple[Task, bool]:
        """Create the task for (source, external_id), or refresh its description.

        Returns (task, created).  An existing task gets title/body/labels/priority/repo/url
        updated (updated_at only moves when something changed); its state is untouched.
        Safe when several coordinators ingest the same issue at once: exactly one creates it.
        Raises ValueError for a priority not in PRIORITY_RANK.
        """
        if new.priority not in PRIORITY_RANK:
            raise ValueError(f"unknown priority {new.priority!r} (known: {', '.join(PRIORITY_RANK)})")
        now = _utcnow()
        described = {
            "title": new.title,
            "body": new.body,
            "labels": list(new.labels),
            "priority": new.priority,
            "priority_rank": PRIORITY_RANK[new.priority],
            "repo": new.repo,
            "url": new.url,
        }
        key = (tasks.c.source == new.source) & (tasks.c.external_id == new.external_id)
        with self._write() as conn:
            ins = (
                self._insert(tasks)
                .values(
                    source=new.source,
                    external_id=new.external_id,
                    state=TaskState.QUEUED.value,
                    retry_count=0,
                    attempt_count=0,
                    excluded_targets=[],
                    cancel_requested=False,
                    created_at=now,
                    updated_at=now,
                    **described,
                )
                .on_conflict_do_nothing(index_elements=["source", "external_id"])
                .returning(*tasks.c)
            )
            created = conn.execute(ins).mappings().first()
            if created is not None:
                retired = (retired_sources.c.source == new.source) & (retired_sources.c.external_id == new.external_id)
                conn.execute(sa.delete(retired_sources).where(retired))
                return _task(created), True
            row = conn.execute(sa.select(tasks).where(key).with_for_update()).mappings().one()
            if all(row[k] == v for k, v in described.items()):
                return _task(row), False
            updated = (
                conn.execute(sa.update(tasks).where(key).values(updated_at=now, **described).returning(*tasks.c))
                .mappings()
                .one()
            )
            return _task(updated), False

    def get_task(self, task_id: int) -> Task | None:
        with self._read() as conn:
            row = conn.execute(sa.select(tasks).where(tasks.c.id == task_id)).mappings().first()
        return None if row is None else _task(row)

    def find_task(self, source: str, external_id: str) -> Task | None:
        with self._read() as conn:
            row = (
                conn.execute(sa.select(tasks).where(tasks.c.source == source, tasks.c.external_id == external_id))
                .mappings()
                .first()
            )
        return None if row is None else _task(row)

    def list_tasks(self, state: TaskState | None = None, limit: int = 200) -> list[Task]:
        """Newest first."""
        query = sa.select(tasks).order_by(tasks.c.created_at.desc(), tasks.c.id.desc()).limit(limit)
        if state is not None:
            query = query.where(tasks.c.state == TaskState(state).value)
        with self._read() as conn:
            return [_task(r) for r in conn.execute(query).mappings()]

    # ------------------------------------------------------------------ claiming
    def claim_task(
        self,
        owner: str,
        lease_until: dt.datetime,
        now: dt.datetime,
        exclude_ids: Collection[int] = (),
    ) -> Task | None:
        """Atomically take one claimable task, or None if there is none for us now.

        Claimable: queued, or retry_wait with not_before <= now (a NULL not_before is
        claimable too).  Order: priority (critical first), then created_at, then id.
        The task becomes running under ``owner`` with the lease, attempt_count + 1 and
        wait_reason cleared; cancel_requested is left as it is.  Each task goes to
        exactly one claimer however many race.
        """

        def claimable(t: sa.Table | Any) -> Any:
            return sa.or_(
                t.c.state == TaskState.QUEUED.value,
                sa.and_(
                    t.c.state == TaskState.RETRY_WAIT.value,
                    sa.or_(t.c.not_before.is_(None), t.c.not_before <= now),
                ),
            )

        # An alias, so the inner SELECT is not correlated away into the outer UPDATE.
        cand_t = tasks.alias("cand_t")
        pick = sa.select(cand_t.c.id).where(claimable(cand_t))
        if exclude_ids:
            pick = pick.where(cand_t.c.id.not_in(list(exclude_ids)))
        pick = pick.order_by(cand_t.c.priority_rank, cand_t.c.created_at, cand_t.c.id).limit(1)
        values = {
            "state": _RUNNING,
            "owner": owner,
            "lease_expires_at": lease_until,
            "attempt_count": tasks.c.attempt_count + 1,
            "wait_reason": None,
            "updated_at": now,
        }
        if self._sqlite:
            # Compare-and-set under the write lock: the re-check of the predicate in the
            # outer WHERE makes it correct even without the lock.
            stmt = sa.update(tasks).where(tasks.c.id == pick.scalar_subquery(), claimable(tasks))
        else:
            # The CTE is an optimisation fence (Oban): the planner cannot turn the
            # LIMIT 1 into a nested loop that locks and updates more rows.
            cand = pick.with_for_update(skip_locked=True).cte("cand")
            stmt = sa.update(tasks).where(tasks.c.id == cand.c.id, claimable(tasks))
        with self._write() as conn:
            row = conn.execute(stmt.values(**values).returning(*tasks.c)).mappings().first()
        return None if row is None else _task(row)

    def release_task(
        self,
        task_id: int,
        owner: str,
        state: TaskState,
        not_before: dt.datetime | None,
        wait_reason: str | None,
    ) -> bool:
        """Give back a claimed task that never started an attempt (e.g. no usable target).

        Fenced on owner, state running and no running attempt.  The task takes ``state``
        (anything but running), ``not_before`` and ``wait_reason`` (for a task released as
        failed, the reason is its ``last_error``); owner and lease are cleared and
        attempt_count goes back down (nothing ran).  False if fenced out.
        """
        state = TaskState(state)
        if state is TaskState.RUNNING:
            raise ValueError("release_task: a released task cannot stay running")
        why: dict[str, Any] = {"wait_reason": wait_reason}
        if state is TaskState.FAILED:
            why = {"wait_reason": None, "last_error": wait_reason}
        running_attempt = sa.exists().where(attempts.c.task_id == tasks.c.id, attempts.c.state == "running")
        stmt = (
            sa.update(tasks)
            .where(
                tasks.c.id == task_id,
                tasks.c.owner == owner,
                tasks.c.state == _RUNNING,
                tasks.c.current_attempt_id.is_(None),
                ~running_attempt,
            )
            .values(
                state=state.value,
                not_before=not_before,
                attempt_count=tasks.c.attempt_count - 1,
                **why,
                updated_at=_utcnow(),
                **_UNOWNED,
            )
        )
        with self._write() as conn:
            return conn.execute(stmt).rowcount == 1

    # ------------------------------------------------------------------ attempts
    def start_attempt(self, task_id: int, owner: str, start: AttemptStart, now: dt.datetime) -> Attempt | None:
        """Record a running attempt of a task we own; None if fenced out or one already runs.

        Fenced on the task being running and owned by ``owner``.  The attempt number is
        the task's attempt count so far + 1; the task's current_attempt_id points at it.
        """
        try:
            with self._write() as conn:
                owned = conn.execute(
                    sa.select(tasks.c.id)
                    .where(tasks.c.id == task_id, tasks.c.owner == owner, tasks.c.state == _RUNNING)
                    .with_for_update()
                ).first()
                if owned is None:
                    return None
                # The task row is locked (PG) / the write lock held (SQLite): the count is stable.
                number = conn.execute(
                    sa.select(sa.func.count()).select_from(attempts).where(attempts.c.task_id == task_id)
                ).scalar_one()
                row = (
                    conn.execute(
                        sa.insert(attempts)
                        .values(
                            task_id=task_id,
                            number=number + 1,
                            provider=start.provider,
                            model=start.model,
                            rule=start.rule,
                            routing=dict(start.routing),
                            config_fingerprint=start.config_fingerprint,
                            owner=owner,
                            host=start.host,
                            started_at=now,
                            state="running",
                            input_tokens=0,
                            output_tokens=0,
                            cache_read_tokens=0,
                            cache_write_tokens=0,
                            failover_from=start.failover_from,
                        )
                        .returning(*attempts.c)
                    )
                    .mappings()
                    .one()
                )
                conn.execute(
                    sa.update(tasks)
                    .where(tasks.c.id == task_id, tasks.c.owner == owner, tasks.c.state == _RUNNING)
                    .values(current_attempt_id=row["id"], updated_at=now)
                )
                return _attempt(row)
        except IntegrityError:
            # ux_attempts_one_running_per_task: another attempt of this task is live.
            return None

    def _attempt_fence(self, attempt_id: int, owner: str) -> Any:
        """The attempt is running, ours, and its task is running, ours, and pointing at it."""
        task_owned = sa.exists().where(
            tasks.c.id == attempts.c.task_id,
            tasks.c.current_attempt_id == attempts.c.id,
            tasks.c.state == _RUNNING,
            tasks.c.owner == owner,
        )
        return sa.and_(
            attempts.c.id == attempt_id, attempts.c.owner == owner, attempts.c.state == "running", task_owned
        )

    def set_attempt_process(self, attempt_id: int, owner: str, pid: int, pgid: int, create_time: float) -> bool:
        """Record the worker's process identity (for orphan killing after a crash).  Fenced."""
        stmt = (
            sa.update(attempts)
            .where(self._attempt_fence(attempt_id, owner))
            .values(pid=pid, pgid=pgid, create_time=create_time)
        )
        with self._write() as conn:
            return conn.execute(stmt).rowcount == 1

    def record_usage(self, owner: str, progress: Mapping[int, Usage]) -> None:
        """Store running attempts' tokens so far ({attempt id: usage}), fenced like every write
        about a running attempt; finish_attempt later overwrites them with the final counts."""
        if not progress:
            return
        with self._write() as conn:
            for attempt_id, usage in sorted(progress.items()):
                conn.execute(
                    sa.update(attempts)
                    .where(self._attempt_fence(attempt_id, owner))
                    .values(
                        input_tokens=usage.input_tokens,
                        output_tokens=usage.output_tokens,
                        cache_read_tokens=usage.cache_read_tokens,
                        cache_write_tokens=usage.cache_write_tokens,
                    )
                )

    def renew_leases(
        self,
        owner: str,
        held: Collection[tuple[int, int | None]],
        lease_until: dt.datetime,
    ) -> set[int]:
        """Extend the leases of (task_id, attempt_id) pairs we run; return the task ids we lost.

        Each renewal is fenced on owner, state running and current_attempt_id (an
        attempt_id of None matches a claimed task with no attempt yet).  A lease that
        has expired but was not reaped yet is renewed: the reaper fences on the expired
        value, so exactly one of the two wins.
        """
        lost: set[int] = set()
        if not held:
            return lost
        with self._write() as conn:
            # In task id order, like every multi-row lock taker here: no lock-order cycles.
            for task_id, attempt_id in sorted(set(held), key=lambda pair: pair[0]):
                current = (
                    tasks.c.current_attempt_id.is_(None)
                    if attempt_id is None
                    else tasks.c.current_attempt_id == attempt_id
                )
                stmt = (
                    sa.update(tasks)
                    .where(tasks.c.id == task_id, tasks.c.owner == owner, tasks.c.state == _RUNNING, current)
                    .values(lease_expires_at=lease_until)  # updated_at tracks changes, not heartbeats
                )
                if conn.execute(stmt).rowcount != 1:
                    lost.add(task_id)
        return lost

    def finish_attempt(
        self,
        attempt_id: int,
        owner: str,
        end: AttemptEnd,
        transition: Transition,
        now: dt.datetime,
    ) -> bool:
        """End our running attempt and move its task on, in one transaction.

        Fenced: the attempt must be running under ``owner`` and be the current attempt of
        a task that is running under ``owner``.  The task takes transition.state and its
        fields (retry_count / excluded_targets only when not None); owner, lease and
        current_attempt_id are cleared.  False, with nothing written, if fenced out.
        """
        target = TaskState(transition.state)
        if target is TaskState.RUNNING:
            raise ValueError("finish_attempt: the transition must leave the running state")
        task_values: dict[str, Any] = {
            "state": target.value,
            "not_before": transition.not_before,
            "wait_reason": transition.wait_reason,
            "last_error": transition.last_error,
            "last_error_kind": transition.last_error_kind,
            "updated_at": now,
            **_UNOWNED,
        }
        if transition.retry_count is not None:
            task_values["retry_count"] = transition.retry_count
        if transition.excluded_targets is not None:
            task_values["excluded_targets"] = list(transition.excluded_targets)
        of_attempt = sa.select(attempts.c.task_id).where(attempts.c.id == attempt_id).scalar_subquery()
        try:
            with self._write() as conn:
                # Task row first (the global lock order), fenced on ownership of this attempt.
                moved = conn.execute(
                    sa.update(tasks)
                    .where(
                        tasks.c.id == of_attempt,
                        tasks.c.owner == owner,
                        tasks.c.state == _RUNNING,
                        tasks.c.current_attempt_id == attempt_id,
                    )
                    .values(**task_values)
                ).rowcount
                if moved != 1:
                    raise _FencedOut
                ended = conn.execute(
                    sa.update(attempts)
                    .where(attempts.c.id == attempt_id, attempts.c.owner == owner, attempts.c.state == "running")
                    .values(**_end_values(end, now))
                ).rowcount
                if ended != 1:
                    raise _FencedOut
        except _FencedOut:
            return False
        return True

    def _requeue_crashed(
        self, conn: Connection, task: RowMapping, message: str, now: dt.datetime
    ) -> tuple[Task, Attempt | None]:
        """Finish the task's running attempt as crashed and put the task back in the queue.

        The caller holds the task row (PG lock / SQLite write lock) and has checked it is
        still running under the owner and lease it read.
        """
        attempt_row = (
            conn.execute(
                sa.update(attempts)
                .where(attempts.c.task_id == task["id"], attempts.c.state == "running")
                .values(**_crashed_values(message, now))
                .returning(*attempts.c)
            )
            .mappings()
            .first()
        )
        values: dict[str, Any] = {
            "state": TaskState.QUEUED.value,
            "not_before": None,
            "wait_reason": None,
            "last_error": message,
            "last_error_kind": "crashed",
            "updated_at": now,
            **_UNOWNED,
        }
        if attempt_row is None:
            # Claimed but never started: nothing ran, so it does not count as an attempt.
            values["attempt_count"] = tasks.c.attempt_count - 1
        row = (
            conn.execute(
                sa.update(tasks)
                .where(
                    tasks.c.id == task["id"],
                    tasks.c.state == _RUNNING,
                    tasks.c.owner == task["owner"],
                    tasks.c.lease_expires_at == task["lease_expires_at"],
                )
                .values(**values)
                .returning(*tasks.c)
            )
            .mappings()
            .one()
        )
        return _task(row), None if attempt_row is None else _attempt(attempt_row)

    def reap_expired(self, now: dt.datetime) -> list[tuple[Task, Attempt | None]]:
        """Requeue every running task whose lease expired before ``now``.

        Its running attempt (if any) ends as crashed ("lease expired: coordinator <owner>
        stopped heartbeating"); the task goes back to queued with owner cleared and
        retry_count unchanged (at-least-once: the attempt stays counted in attempt_count).
        Several reapers at once reap each task once.  Returns what was reaped, so the
        caller can kill a local orphan by its pid/create_time.
        """
        pick = sa.select(tasks).where(tasks.c.state == _RUNNING, tasks.c.lease_expires_at < now)
        if not self._sqlite:
            # Rows another reaper (or a finishing owner) holds are theirs to settle.
            pick = pick.with_for_update(skip_locked=True)
        out: list[tuple[Task, Attempt | None]] = []
        with self._write() as conn:
            expired = list(conn.execute(pick.order_by(tasks.c.id)).mappings())
            for task in expired:
                message = REAPED_MESSAGE.format(owner=task["owner"])
                out.append(self._requeue_crashed(conn, task, message, now))
        return out

    def abandon_attempt(self, attempt_id: int, expected_owner: str, now: dt.datetime, message: str) -> bool:
        """End a previous incarnation's orphan attempt as crashed and requeue its task.

        Fenced on the attempt still running under ``expected_owner`` (and its task still
        running under that owner); False if someone already settled it.
        """
        with self._write() as conn:
            task = (
                conn.execute(
                    sa.select(tasks)
                    .where(
                        tasks.c.id
                        == sa.select(attempts.c.task_id).where(attempts.c.id == attempt_id).scalar_subquery(),
                        tasks.c.state == _RUNNING,
                        tasks.c.owner == expected_owner,
                        tasks.c.current_attempt_id == attempt_id,
                    )
                    .with_for_update()
                )
                .mappings()
                .first()
            )
            if task is None:
                return False
            live = conn.execute(
                sa.select(attempts.c.id).where(
                    attempts.c.id == attempt_id,
                    attempts.c.owner == expected_owner,
                    attempts.c.state == "running",
                )
            ).first()
            if live is None:
                return False
            self._requeue_crashed(conn, task, message, now)
        return True

    def running_attempts(self, host: str | None = None, owner: str | None = None) -> list[Attempt]:
        query = sa.select(attempts).where(attempts.c.state == "running").order_by(attempts.c.id)
        if host is not None:
            query = query.where(attempts.c.host == host)
        if owner is not None:
            query = query.where(attempts.c.owner == owner)
        with self._read() as conn:
            return [_attempt(r) for r in conn.execute(query).mappings()]

    def attempts_for(self, task_id: int) -> list[Attempt]:
        """Oldest first."""
        query = sa.select(attempts).where(attempts.c.task_id == task_id).order_by(attempts.c.number)
        with self._read() as conn:
            return [_attempt(r) for r in conn.execute(query).mappings()]

    # ------------------------------------------------------------------ operator actions
    def request_cancel(self, task_id: int, now: dt.datetime) -> TaskState | None:
        """Cancel a task: at once if waiting, via its owner if running.

        queued / retry_wait -> cancelled (returns CANCELLED); running -> cancel_requested
        set (returns RUNNING: the owner kills its worker and finishes with a cancelled
        transition); terminal -> unchanged (returns its state); None if no such task.
        """
        with self._write() as conn:
            state = conn.execute(
                sa.select(tasks.c.state).where(tasks.c.id == task_id).with_for_update()
            ).scalar_one_or_none()
            if state is None:
                return None
            if state in _CLAIMABLE:
                conn.execute(
                    sa.update(tasks)
                    .where(tasks.c.id == task_id, tasks.c.state.in_(_CLAIMABLE))
                    .values(state=TaskState.CANCELLED.value, not_before=None, wait_reason=None, updated_at=now)
                )
                return TaskState.CANCELLED
            if state == _RUNNING:
                conn.execute(
                    sa.update(tasks)
                    .where(tasks.c.id == task_id, tasks.c.state == _RUNNING)
                    .values(cancel_requested=True, updated_at=now)
                )
                return TaskState.RUNNING
            return TaskState(state)

    def requeue_task(self, task_id: int, now: dt.datetime, reset_retries: bool = False) -> bool:
        """``adw retry``: put a non-running task back in the queue, claimable at once.

        Clears cancel_requested, excluded_targets, not_before and wait_reason; with
        ``reset_retries`` also retry_count and attempt_count (a fresh round: the router sees a
        first try, and max_attempts/max_total_attempts count from here).  False if the task is
        running or missing.
        """
        values: dict[str, Any] = {
            "state": TaskState.QUEUED.value,
            "cancel_requested": False,
            "excluded_targets": [],
            "not_before": None,
            "wait_reason": None,
            "updated_at": now,
        }
        if reset_retries:
            values["retry_count"] = 0
            values["attempt_count"] = 0
            values["round_started_at"] = now
        stmt = sa.update(tasks).where(tasks.c.id == task_id, tasks.c.state.in_(_REQUEUEABLE)).values(**values)
        with self._write() as conn:
            return conn.execute(stmt).rowcount == 1

    def cancel_requested(self, owner: str) -> list[int]:
        """Ids of running tasks owned by ``owner`` whose cancellation was requested."""
        query = (
            sa.select(tasks.c.id)
            .where(tasks.c.owner == owner, tasks.c.state == _RUNNING, tasks.c.cancel_requested.is_(True))
            .order_by(tasks.c.id)
        )
        with self._read() as conn:
            return list(conn.execute(query).scalars())

    # ------------------------------------------------------------------ metrics
    def ping(self) -> None:
        """A trivial read: raises SQLAlchemyError if the store cannot be reached."""
        with self._read() as conn:
            conn.execute(sa.select(coordinators.c.id).limit(1)).all()

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

    def _aggregate_queries(self, duration_buckets: Sequence[float], where: Any = None) -> dict[str, Any]:
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
        d = self._duration_s()
        by_duration = (
            sa.select(
                attempts.c.provider,
                sa.func.count().label("n"),
                sa.func.coalesce(sa.func.sum(d), 0.0).label("total"),
                *(sa.func.sum(sa.case((d <= b, 1), else_=0)).label(f"le{i}") for i, b in enumerate(duration_buckets)),
            )
            .where(finished, where)
            .group_by(attempts.c.provider)
        )
        by_failover = (
            sa.select(attempts.c.provider, attempts.c.failover_from, sa.func.count().label("n"))
            .where(attempts.c.failover_from.is_not(None), where)
            .group_by(attempts.c.provider, attempts.c.failover_from)
        )
        return {"by_target": by_target, "by_duration": by_duration, "by_failover": by_failover}

    def attempt_aggregates(
        self, duration_buckets: Sequence[float] = DURATION_BUCKETS_S, recovered_kind: str = RECOVERED_EVENT
    ) -> dict[str, Any]:
        """Attempts grouped for metrics, in one read transaction (one snapshot on SQLite's WAL):
        ``by_target`` (provider, model, outcome — "running" for live ones — count, token sums, cost),
        ``by_duration`` (per provider: count, total seconds, ``le{i}`` cumulative bucket counts),
        ``by_failover`` (provider, failover_from, count) and ``recoveries`` (events of that kind).

        Totals include what retention pruned (``retired_counts``), so they never go down."""
        recovered = sa.select(sa.func.count()).select_from(events).where(events.c.kind == recovered_kind)
        with self._read() as conn:
            out: dict[str, Any] = {
                group: [dict(r) for r in conn.execute(q).mappings()]
                for group, q in self._aggregate_queries(duration_buckets).items()
            }
            out["recoveries"] = int(conn.execute(recovered).scalar_one())
            retired = conn.execute(sa.select(retired_counts)).all()
        if duration_buckets == DURATION_BUCKETS_S and recovered_kind == RECOVERED_EVENT:
            _merge_retired(out, retired)
        return out

    def _retire_counts(self, conn: Connection, attempts_where: Any, events_where: Any) -> None:
        """Fold the aggregates of attempts and events about to be deleted into retired_counts."""
        totals: dict[tuple[str, str], float] = {}
        if attempts_where is not None:
            for group, q in self._aggregate_queries(DURATION_BUCKETS_S, attempts_where).items():
                keys = _GROUP_KEYS[group]
                for row in conn.execute(q).mappings():
                    labels = json.dumps([row[k] for k in keys])
                    for name, value in row.items():
                        if name not in keys and value:
                            totals[(f"{group}.{name}", labels)] = totals.get((f"{group}.{name}", labels), 0) + value
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
        """Delete terminal tasks last changed before ``finished_before`` (their attempts, events and
        source state go with them: ON DELETE CASCADE) and events older than ``events_before``."""
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
        now = _utcnow()
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

    # ------------------------------------------------------------------ source state
    def source_state(self, task_id: int) -> dict[str, Any]:
        """What the task's source remembered about it ({} if nothing yet)."""
        with self._read() as conn:
            row = conn.execute(sa.select(source_state.c.data).where(source_state.c.task_id == task_id)).first()
        return dict(row[0]) if row is not None else {}

    def update_source_state(self, task_id: int, changes: Mapping[str, Any], now: dt.datetime) -> dict[str, Any]:
        """Merge ``changes`` into the task's source state (one transaction); returns the result."""
        with self._write() as conn:
            # Row lock on PostgreSQL so concurrent merges (poll, sync, another host) lose nothing.
            row = conn.execute(
                sa.select(source_state.c.data).where(source_state.c.task_id == task_id).with_for_update()
            ).first()
            data = {**(dict(row[0]) if row is not None else {}), **changes}
            ins = self._insert(source_state).values(task_id=task_id, data=data, updated_at=now)
            conn.execute(ins.on_conflict_do_update(index_elements=["task_id"], set_={"data": data, "updated_at": now}))
        return data

    def tasks_by_source(
        self, source: str, states: Collection[TaskState] | None = None, updated_since: dt.datetime | None = None
    ) -> list[Task]:
        """A source's tasks, optionally only in ``states`` or changed since ``updated_since`` (oldest change first)."""
        q = sa.select(tasks).where(tasks.c.source == source)
        if states is not None:
            q = q.where(tasks.c.state.in_([str(s) for s in states]))
        if updated_since is not None:
            q = q.where(tasks.c.updated_at >= updated_since)
        with self._read() as conn:
            return [_task(r) for r in conn.execute(q.order_by(tasks.c.updated_at, tasks.c.id)).mappings()]

    # ------------------------------------------------------------------ provider health
    def provider_states(self) -> dict[str, ProviderState]:
        with self._read() as conn:
            rows = conn.execute(sa.select(provider_state).order_by(provider_state.c.provider)).mappings()
            return {r["provider"]: _provider_state(r) for r in rows}

    def save_provider_state(self, state: ProviderState) -> None:
        """Upsert (last writer wins; use update_provider_state for read-modify-write)."""
        values = _provider_values(state, _utcnow())
        ins = self._insert(provider_state).values(provider=state.provider, **values)
        with self._write() as conn:
            conn.execute(ins.on_conflict_do_update(index_elements=["provider"], set_=values))

    def update_provider_state(self, provider: str, fn: Callable[[ProviderState], ProviderState]) -> ProviderState:
        """Read-modify-write one provider's state atomically; returns what was stored.

        ``fn`` gets the current state (a default closed one if none is stored yet) and
        returns the new one.  The row is locked for the whole transaction, so concurrent
        updates from several coordinators serialise and none is lost.  ``fn`` must be
        quick and must not touch the store.
        """
        now = _utcnow()
        default = _provider_values(ProviderState(provider=provider), now)
        with self._write() as conn:
            conn.execute(
                self._insert(provider_state)
                .values(provider=provider, **default)
                .on_conflict_do_nothing(index_elements=["provider"])
            )
            row = (
                conn.execute(sa.select(provider_state).where(provider_state.c.provider == provider).with_for_update())
                .mappings()
                .one()
            )
            new = fn(_provider_state(row))
            if new.provider != provider:
                raise ValueError(f"update_provider_state: fn returned provider {new.provider!r}, not {provider!r}")
            conn.execute(
                sa.update(provider_state)
                .where(provider_state.c.provider == provider)
                .values(**_provider_values(new, now))
            )
            stored = (
                conn.execute(sa.select(provider_state).where(provider_state.c.provider == provider)).mappings().one()
            )
            return _provider_state(stored)

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
            at=now or _utcnow(),
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
        key: Any
        if by == "provider":
            key = attempts.c.provider
        elif by == "model":
            key = attempts.c.model
        elif by == "day":
            if self._sqlite:
                key = sa.func.date(attempts.c.started_at)  # stored as naive UTC text
            else:
                key = sa.func.to_char(sa.func.timezone("UTC", attempts.c.started_at), "YYYY-MM-DD")
        else:
            key = attempts.c.task_id
        sums = [
            sa.func.count().label("attempts"),
            *(
                sa.func.coalesce(sa.func.sum(attempts.c[c]), 0).label(c)
                for c in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
            ),
            sa.func.coalesce(sa.func.sum(attempts.c.cost_usd), 0.0).label("cost_usd"),
        ]
        query = sa.select(key.label("key"), *sums).group_by(key)
        if since is not None:
            query = query.where(attempts.c.started_at >= since)
        with self._read() as conn:
            rows = [dict(r) for r in conn.execute(query).mappings()]
            labels: dict[int, list[str]] = {}
            if by == "label" and rows:
                ids = [r["key"] for r in rows]
                found = conn.execute(sa.select(tasks.c.id, tasks.c.labels).where(tasks.c.id.in_(ids)))
                labels = {tid: list(ls or []) for tid, ls in found}
        if by == "label":
            # Expanding JSON arrays differs per backend (json_each vs jsonb_array_elements);
            # per-task sums are few enough to expand here.
            merged: dict[str, dict[str, Any]] = {}
            for row in rows:
                for label in dict.fromkeys(labels.get(row["key"]) or [UNLABELLED]):
                    acc = merged.setdefault(label, {"key": label, **{k: 0 for k in row if k != "key"}})
                    for k, v in row.items():
                        if k != "key":
                            acc[k] += v
            rows = list(merged.values())
        out: list[dict[str, Any]] = []
        for r in rows:
            out.append(
                {
                    "key": str(r["key"]),
                    "attempts": int(r["attempts"]),
                    "input_tokens": int(r["input_tokens"]),
                    "output_tokens": int(r["output_tokens"]),
                    "cache_read_tokens": int(r["cache_read_tokens"]),
                    "cache_write_tokens": int(r["cache_write_tokens"]),
                    "cost_usd": float(r["cost_usd"]),
                }
            )
        out.sort(key=lambda r: r["key"])
        return out

    # ------------------------------------------------------------------ coordinators
    def register_coordinator(self, owner: str, name: str, host: str, pid: int, now: dt.datetime) -> None:
        values = {"name": name, "host": host, "pid": pid, "started_at": now, "heartbeat_at": now}
        ins = self._insert(coordinators).values(id=owner, **values)
        with self._write() as conn:
            conn.execute(ins.on_conflict_do_update(index_elements=["id"], set_=values))

    def heartbeat_coordinator(self, owner: str, now: dt.datetime) -> None:
        with self._write() as conn:
            conn.execute(sa.update(coordinators).where(coordinators.c.id == owner).values(heartbeat_at=now))

    def coordinators(self) -> list[dict[str, Any]]:
        """Dicts with id (the owner string), name, host, pid, started_at, heartbeat_at; oldest first."""
        query = sa.select(coordinators).order_by(coordinators.c.started_at, coordinators.c.id)
        with self._read() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def unregister_coordinator(self, owner: str) -> None:
        with self._write() as conn:
            conn.execute(sa.delete(coordinators).where(coordinators.c.id == owner))

    # ------------------------------------------------------------------ leader lease
    def acquire_leader(self, name: str, owner: str, until: dt.datetime, now: dt.datetime) -> bool:
        """Take or renew the singleton lease ``name``; True if ``owner`` holds it until ``until``.

        One upsert (Oban's peer election): it succeeds if the lease is free, expired at
        ``now``, or already ours.
        """
        ins = self._insert(leader_leases).values(name=name, owner=owner, expires_at=until)
        stmt = ins.on_conflict_do_update(
            index_elements=["name"],
            set_={"owner": ins.excluded.owner, "expires_at": ins.excluded.expires_at},
            where=sa.or_(leader_leases.c.owner == owner, leader_leases.c.expires_at <= now),
        ).returning(leader_leases.c.name)
        with self._write() as conn:
            return conn.execute(stmt).first() is not None

    def release_leader(self, name: str, owner: str) -> None:
        with self._write() as conn:
            conn.execute(sa.delete(leader_leases).where(leader_leases.c.name == name, leader_leases.c.owner == owner))
