"""Engine creation and schema migration: SQLite (WAL, busy timeout, ``BEGIN IMMEDIATE`` for
writers) and PostgreSQL, and Alembic's packaged migrations.

Alembic is imported only to upgrade: a store already at ``HEAD_REVISION`` is recognised by
reading its ``alembic_version`` row, so every ``adw`` command that opens a current store
skips importing Alembic's environment (a few hundred ms)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

if TYPE_CHECKING:
    from alembic.config import Config

# The migrations live beside this package, in adw_modules/queue/migrations.
MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
# The newest revision in migrations/versions; a test asserts it is Alembic's head.
HEAD_REVISION = "0010"
SQLITE_BUSY_TIMEOUT_S = 30.0
# Any fixed 64-bit number: the advisory lock that serialises migrations across processes.
PG_MIGRATION_LOCK_KEY = 0x0ADC_0057_0E5E


def alembic_config(url: str | None = None, connection: Connection | None = None) -> Config:
    """An Alembic Config for the packaged migrations (no alembic.ini needed)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Revision modules must be importable names for mypy (no leading digit).
    cfg.set_main_option("file_template", "rev_%%(rev)s_%%(slug)s")
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


class MigrationError(Exception):
    """Alembic could not bring the schema to head (e.g. the store is at a revision this adw
    does not know: a newer adw migrated it).  The message is Alembic's."""


def migrate(engine: Engine) -> None:
    """Bring the schema to head, safely when several processes start at once.

    A store whose ``alembic_version`` already reads ``HEAD_REVISION`` is left alone, without
    importing Alembic.  That read takes no lock and needs none: an upgrade writes the new
    revision in the same transaction as the schema change, so a reader sees either the old
    revision (and takes the locked path below) or a finished upgrade.

    Otherwise the whole upgrade runs in one transaction that first takes a cross-process lock:
    ``pg_advisory_xact_lock`` on PostgreSQL, SQLite's write lock (``BEGIN IMMEDIATE``)
    otherwise.  Whoever comes second waits, then finds the schema at head.
    """
    if stored_revisions(engine) == [HEAD_REVISION]:
        return
    from alembic import command
    from alembic.util.exc import CommandError

    if engine.dialect.name == "sqlite":
        engine = engine.execution_options(adw_sqlite_begin="IMMEDIATE")
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(PG_MIGRATION_LOCK_KEY)))
        try:
            command.upgrade(alembic_config(connection=conn), "head")
        except CommandError as exc:
            raise MigrationError(str(exc)) from exc


def stored_revisions(engine: Engine) -> list[str] | None:
    """The revision ids in ``alembic_version``; None if it cannot be read (no such table yet)."""
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())
    except sa.exc.DBAPIError:
        # A missing table, or anything else: the locked path decides (and reports a real error).
        return None


def make_engine(url: str) -> Engine:
    """An engine for a SQLite file (WAL, busy timeout, ``BEGIN IMMEDIATE`` for writers) or PostgreSQL."""
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
