"""``StoreBase``: what every part of the store shares (lifecycle, transactions, dialect INSERT),
and the retry of a public method whose PostgreSQL connection was dropped under it.

A dropped connection (PostgreSQL restarted or failed over, ``pg_terminate_backend``, an idle
killer, a network cut) fails the transaction that was using it; the pool's pre-ping replaces
connections that died while idle.  Each public store method is one transaction, so the
method is run once more, on a fresh connection, when that is known to be safe:

* the connection died before COMMIT was sent: nothing was written, the repeat is the first
  write (reads are always in this case: they write nothing);
* it died while COMMIT was on its way, so the transaction may or may not have committed:
  only the methods in ``REPEATABLE_AFTER_COMMIT`` are repeated.  Each is fenced or
  idempotent, so a repeat after a commit that did happen is harmless (see there).  Any other
  method raises, as before: the caller's own recovery (a lease running out, the reaper)
  applies, and the unknown commit costs at most one more run of that one task.

Once per call, never more: a database that keeps dropping connections is an outage the
caller must see.  Only the outermost public method retries (one calling another inside it
does not multiply the tries), and never after one of its write transactions committed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import inspect
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Self, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection, Engine

from adw_modules.queue.store import wakeups
from adw_modules.queue.store.engine import make_engine, migrate
from adw_modules.queue.store.schema import coordinators

UTC = dt.UTC
log = logging.getLogger("adw.store")
F = TypeVar("F", bound=Callable[..., Any])

# Public methods that may run again when their COMMIT was cut off (it may have committed):
REPEATABLE_AFTER_COMMIT = frozenset(
    {
        # Fenced on owner + attempt id: a repeat after a commit finds the attempt no longer
        # running under us and changes nothing (returns False / None).  For finish_attempt
        # the caller then records no health or events for that attempt (it logs it as
        # dropped): the task and attempt rows already hold what the first commit wrote.
        "finish_attempt",
        "abandon_attempt",
        "set_attempt_process",
        "record_processes",
        # Idempotent: the repeat writes the same values again.
        "renew_leases",
        "record_usage",
        "heartbeat_coordinator",
        "register_coordinator",
        "unregister_coordinator",
        "save_provider_state",
        "acquire_leader",
        "release_leader",
        "forget_attempt_logs",
        # A log line: a repeat after a commit stores the event twice, which only shows.
        "add_event",
    }
)


class _CallScope(threading.local):
    """Per thread: how deep in public store methods we are, and what the current call did."""

    depth = 0
    committed_writes = 0  # write transactions of this call that committed
    committing = False  # the current write transaction's COMMIT was sent
    announce = False  # the current write transaction made work claimable (SQLite: poke after commit)


def dropped_connection(exc: BaseException) -> bool:
    """The driver lost the connection (SQLAlchemy recognised a disconnect and invalidated it)."""
    return isinstance(exc, sa.exc.DBAPIError) and bool(exc.connection_invalidated)


def _retry_on_dropped_connection(name: str, method: F) -> F:
    @functools.wraps(method)
    def call(self: StoreBase, *args: Any, **kwargs: Any) -> Any:
        scope = self._scope
        if scope.depth:  # inside another public method: that one decides
            return method(self, *args, **kwargs)
        for attempt in (1, 2):
            scope.depth, scope.committed_writes, scope.committing = 1, 0, False
            try:
                return method(self, *args, **kwargs)
            except sa.exc.DBAPIError as exc:
                if attempt == 2 or not self._may_repeat(name, exc):
                    raise
                log.warning(
                    "store.%s: the database connection was dropped (%s); running it again on a new one",
                    name,
                    type(exc.orig).__name__,
                    extra={"data": {"event": "store.reconnected", "method": name}},
                )
            finally:
                scope.depth = 0
        raise AssertionError("unreachable")

    return call  # type: ignore[return-value]


def utcnow() -> dt.datetime:
    """Now, timezone-aware UTC (the store refuses naive datetimes)."""
    return dt.datetime.now(UTC)


class StoreBase:
    """The engine and its transactions; ``Store`` adds the queries, one mixin per concern.

    Every public method a subclass defines is wrapped to run once more after a dropped
    connection when that is safe (module docstring)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name, value in list(vars(cls).items()):
            if not name.startswith("_") and inspect.isfunction(value):
                setattr(cls, name, _retry_on_dropped_connection(name, value))

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._scope = _CallScope()
        self._sqlite = engine.dialect.name == "sqlite"
        # Write transactions on SQLite take the write lock up front (see engine._configure_sqlite).
        self._writer = engine.execution_options(adw_sqlite_begin="IMMEDIATE") if self._sqlite else engine
        self._wake_dir = wakeups.wake_dir(engine)
        # SQLite has one writer at a time; a thread that finds the lock taken sleeps in SQLite's
        # busy handler (1, 2, 5, 10 … 100 ms), long after the holder is done.  Threads of this
        # process queue here instead and get the lock the moment it is free; other processes
        # still meet the busy handler.
        self._local_writer = threading.RLock() if self._sqlite else contextlib.nullcontext()

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def open(cls, url: str) -> Self:
        """Connect to ``sqlite:///path`` or ``postgresql+psycopg://…`` and migrate to head."""
        engine = make_engine(url)
        try:
            migrate(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine)

    def close(self) -> None:
        """Close every pooled connection; the Store is unusable afterwards."""
        self._engine.dispose()

    def __enter__(self) -> Self:
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
        scope = self._scope
        scope.committing = scope.announce = False
        with self._local_writer, self._writer.begin() as conn:
            yield conn
            scope.committing = True  # the body is done: leaving the block sends COMMIT
        scope.committing = False
        scope.committed_writes += 1
        if scope.announce:
            scope.announce = False
            wakeups.announce_after_commit(self._wake_dir)

    def _announce(self, conn: Connection) -> None:
        """This write transaction makes work claimable: wake the listening coordinators when it
        commits (``wakeups``)."""
        if self._sqlite:
            self._scope.announce = True
        else:
            wakeups.notify_in(conn)

    def listen(self, on_wake: Callable[[], None]) -> wakeups.Listener:
        """Call ``on_wake`` (from a thread of its own) whenever a write announces claimable work;
        the caller closes the returned listener."""
        return wakeups.listen(self._engine, on_wake)

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._engine.begin() as conn:
            yield conn

    def _may_repeat(self, name: str, exc: BaseException) -> bool:
        """May the public method ``name``, which failed with ``exc``, run once more?"""
        scope = self._scope
        if not dropped_connection(exc) or scope.committed_writes:
            return False
        return not scope.committing or name in REPEATABLE_AFTER_COMMIT

    def _insert(self, table: sa.Table) -> Any:
        """A dialect INSERT, which has ON CONFLICT on both backends."""
        return sqlite_dialect.insert(table) if self._sqlite else pg_dialect.insert(table)

    def optimize(self) -> None:
        """SQLite: refresh the query planner's statistics (sampled, so bounded in cost); without
        them SQLite sorts every claimable task on each claim instead of walking the claim index.
        PostgreSQL's autovacuum keeps its own.  Run at start and by the retention job."""
        if not self._sqlite:
            return
        with self._write() as conn:
            conn.exec_driver_sql("PRAGMA analysis_limit = 1000")
            conn.exec_driver_sql("ANALYZE")

    def ping(self) -> None:  # not wrapped (StoreBase's own): a health check must see a drop
        """A trivial read: raises SQLAlchemyError if the store cannot be reached."""
        with self._read() as conn:
            conn.execute(sa.select(coordinators.c.id).limit(1)).all()
