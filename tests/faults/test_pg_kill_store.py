"""The store's retry of a method whose PostgreSQL connection is dropped, one case at a time.

Each test terminates the backend of the very connection a store method is using, at a chosen
moment (before one of its statements, or as it sends COMMIT), with ``pg_terminate_backend``
from an admin connection, and checks what the method then does (base.StoreBase): run again on
a new connection when that is safe, raise when it is not, never more than once.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from adw_modules.queue.store import Store
from adw_modules.queue.store.base import REPEATABLE_AFTER_COMMIT
from adw_modules.queue.store.schema import metadata
from adw_modules.queue.tasks import NewTask
from tests.coordinator.harness import PG_ADMIN_URL, scratch_pg_database

pytestmark = pytest.mark.postgres

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


class Dropper:
    """Terminates the backend of the store's connection when an armed moment comes, ``times`` times."""

    def __init__(self, store: Store, admin: sa.Engine) -> None:
        self.admin = admin
        self.times = 0
        self.statement: str | None = None  # drop before a statement containing this text …
        self.at_commit = False  # … or as COMMIT is sent
        self.dropped = 0
        sa.event.listen(store.engine, "before_cursor_execute", self._before_execute)
        sa.event.listen(store.engine, "commit", self._on_commit)

    def arm(self, *, statement: str | None = None, at_commit: bool = False, times: int = 1) -> None:
        self.statement, self.at_commit, self.times = statement, at_commit, times

    def _drop(self, conn: sa.Connection) -> None:
        pid = conn.connection.dbapi_connection.info.backend_pid  # type: ignore[union-attr]
        with self.admin.connect() as admin:
            # The second argument waits (ms) until the backend is gone, so the next use fails.
            assert admin.execute(sa.select(sa.func.pg_terminate_backend(pid, 5000))).scalar_one()
        self.times -= 1
        self.dropped += 1

    def _before_execute(self, conn: sa.Connection, _cur: Any, statement: str, *_: Any) -> None:
        if self.times > 0 and self.statement is not None and self.statement in statement:
            self._drop(conn)

    def _on_commit(self, conn: sa.Connection) -> None:
        if self.times > 0 and self.at_commit:
            self._drop(conn)


@pytest.fixture
def pg() -> Iterator[tuple[Store, Dropper]]:
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not reachable ({exc.orig}); set ADW_TEST_PG_URL", pytrace=False)
    try:
        with scratch_pg_database() as url, Store.open(url) as store:
            yield store, Dropper(store, admin)
    finally:
        admin.dispose()


def rows(store: Store, table: str) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(metadata.tables[table])).scalar_one())


def enqueue(store: Store, key: str = "t1") -> int:
    task, _ = store.upsert_task(NewTask(source="local", external_id=key, title=key))
    return task.id


def test_a_read_whose_connection_drops_runs_again(pg: tuple[Store, Dropper], caplog: pytest.LogCaptureFixture) -> None:
    store, drop = pg
    task_id = enqueue(store)
    drop.arm(statement="FROM tasks")
    with caplog.at_level(logging.WARNING, logger="adw.store"):
        task = store.get_task(task_id)
    assert drop.dropped == 1
    assert task is not None and task.id == task_id
    assert [r.getMessage() for r in caplog.records if "get_task" in r.getMessage()], caplog.text


def test_a_write_dropped_before_commit_runs_again_and_writes_once(pg: tuple[Store, Dropper]) -> None:
    store, drop = pg
    drop.arm(statement="INSERT INTO tasks")
    task_id = enqueue(store)
    assert drop.dropped == 1
    assert rows(store, "tasks") == 1 and store.get_task(task_id) is not None


def test_a_write_dropped_at_commit_is_not_repeated_unless_it_is_repeatable(pg: tuple[Store, Dropper]) -> None:
    store, drop = pg
    first, second = enqueue(store, "t1"), enqueue(store, "t2")
    # claim_task is not in REPEATABLE_AFTER_COMMIT: had its COMMIT gone through, a repeat
    # would claim a second task, so the caller hears of the drop instead.
    drop.arm(at_commit=True)
    with pytest.raises(sa.exc.OperationalError):
        store.claim_task("c/1", NOW + dt.timedelta(seconds=30), NOW)
    assert drop.dropped == 1
    assert sorted((t.id, str(t.state)) for t in store.list_tasks()) == [(first, "queued"), (second, "queued")]
    # register_coordinator is an upsert: repeated after the unknown commit, harmlessly.
    drop.arm(at_commit=True)
    store.register_coordinator("c/1", "c", "host", 1, NOW)
    assert drop.dropped == 2
    assert [c["id"] for c in store.coordinators()] == ["c/1"]


def test_a_method_runs_again_once_not_twice(pg: tuple[Store, Dropper]) -> None:
    store, drop = pg
    enqueue(store)
    drop.arm(statement="FROM tasks", times=2)
    with pytest.raises(sa.exc.OperationalError):
        store.list_tasks()
    assert drop.dropped == 2
    assert len(store.list_tasks()) == 1  # and the store works on afterwards


def test_every_repeatable_name_is_a_store_method() -> None:
    """A renamed method would silently lose its repeat after an unknown commit."""
    public = {name for name in dir(Store) if not name.startswith("_") and callable(getattr(Store, name))}
    assert REPEATABLE_AFTER_COMMIT <= public, REPEATABLE_AFTER_COMMIT - public
