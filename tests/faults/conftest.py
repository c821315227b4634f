"""Fixtures for the fault-injection suite: a store per test on SQLite or PostgreSQL, and the
matrix of results, written to a file when ``ADW_FAULT_MATRIX`` is set ("1": .cache/faults-matrix.txt,
else the path it names)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from adw_modules.queue.store import Store
from adw_modules.queue.store.schema import metadata
from tests.coordinator.harness import require_postgres, scratch_pg_database
from tests.paths import REPO

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]
# (method, k, mode, backend) -> what happened, filled in by each case.
MATRIX: dict[tuple[str, int, str, str], str] = {}


@pytest.fixture(scope="session")
def faults_pg_url() -> Iterator[str]:
    require_postgres()
    with scratch_pg_database() as url:
        Store.open(url).close()  # migrated once
        yield url


@pytest.fixture(params=BACKENDS)
def fault_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """An empty store on the backend of the case."""
    if request.param == "sqlite":
        store = Store.open(f"sqlite:///{tmp_path / 'adw.db'}")
    else:
        store = Store.open(request.getfixturevalue("faults_pg_url"))
        names = ", ".join(t.name for t in metadata.sorted_tables)
        with store.engine.begin() as conn:
            conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    try:
        yield store
    finally:
        store.close()


def matrix_text() -> str:
    methods = sorted({m for m, *_ in MATRIX})
    lines = ["method                   k  mode    backend     result", "-" * 100]
    for method in methods:
        for key in sorted(k for k in MATRIX if k[0] == method):
            _, k, mode, backend = key
            lines.append(f"{method:<24} {k}  {mode:<7} {backend:<11} {MATRIX[key]}")
    return "\n".join(lines) + "\n"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    where = os.environ.get("ADW_FAULT_MATRIX")
    if not where or not MATRIX:
        return
    path = REPO / ".cache" / "faults-matrix.txt" if where == "1" else Path(where)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(matrix_text())
