"""Fixtures for the store contract suite: every test runs on SQLite and on PostgreSQL.

PostgreSQL: one scratch database ``adw_test_<random>`` per session on ADW_TEST_PG_URL
(default: 127.0.0.1:5432 as postgres), migrated once by the first Store.open and
truncated before each test; dropped at the end.  If the server is unreachable the
PostgreSQL cases fail (they do not skip): CI has the server, and a silently skipped
backend is an untested one.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from adw_modules.queue.store import Store
from adw_modules.queue.store.schema import metadata

PG_ADMIN_URL = os.environ.get("ADW_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[sa.Engine]:
    engine = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        engine.dispose()
        pytest.fail(
            f"PostgreSQL is not reachable at {sa.make_url(PG_ADMIN_URL).render_as_string(hide_password=True)}"
            f" ({exc.orig}). The store's PostgreSQL tests need a real server (CI provides one):"
            " start it, or point ADW_TEST_PG_URL at one.",
            pytrace=False,
        )
    yield engine
    engine.dispose()


@contextmanager
def scratch_pg_database(admin: sa.Engine) -> Iterator[str]:
    """A fresh, empty database; yields its URL and drops it afterwards."""
    name = f"adw_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def pg_url(pg_admin: sa.Engine) -> Iterator[str]:
    with scratch_pg_database(pg_admin) as url:
        yield url


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state' / 'store.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = Store.open(store_url)
    if s.dialect == "postgresql":
        names = ", ".join(t.name for t in metadata.sorted_tables)
        with s.engine.begin() as conn:
            conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    try:
        yield s
    finally:
        s.close()
