"""``StoreBase``: what every part of the store shares (lifecycle, transactions, dialect INSERT)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Self

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection, Engine

from adw_modules.queue.store.engine import make_engine, migrate
from adw_modules.queue.store.schema import coordinators

UTC = dt.UTC


def utcnow() -> dt.datetime:
    """Now, timezone-aware UTC (the store refuses naive datetimes)."""
    return dt.datetime.now(UTC)


class StoreBase:
    """The engine and its transactions; ``Store`` adds the queries, one mixin per concern."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._sqlite = engine.dialect.name == "sqlite"
        # Write transactions on SQLite take the write lock up front (see engine._configure_sqlite).
        self._writer = engine.execution_options(adw_sqlite_begin="IMMEDIATE") if self._sqlite else engine

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
        with self._writer.begin() as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._engine.begin() as conn:
            yield conn

    def _insert(self, table: sa.Table) -> Any:
        """A dialect INSERT, which has ON CONFLICT on both backends."""
        return sqlite_dialect.insert(table) if self._sqlite else pg_dialect.insert(table)

    def ping(self) -> None:
        """A trivial read: raises SQLAlchemyError if the store cannot be reached."""
        with self._read() as conn:
            conn.execute(sa.select(coordinators.c.id).limit(1)).all()
