"""Fixtures for the process-level coordinator tests: real ``adw run`` subprocesses.

Each test writes its own config files into its tmp dir, shares one store between its
coordinators and a worker log (tests/coordinator/worker.py) on which executions are
counted from the worker's side.  Anything a test started that still runs at the end (a
coordinator, a hung worker) is killed by pid afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
import sqlalchemy as sa

from adw_modules.queue.store import Store
from tests.coordinator.harness import (
    PG_ADMIN_URL,
    WORKER,
    Coord,
    Setup,
    coordinators,
    kill_pid,
    scratch_pg_database,
)


@pytest.fixture
def coords() -> Iterator[list[Coord]]:
    with coordinators() as started:
        yield started


def _kill_leftover_workers(setup: Setup) -> None:
    pids = setup.log.all_pids() | {int(f.read_text()) for f in setup.log.state.glob("*.pid")}
    for pid in pids:
        # Hundreds of pids were logged: one may have been reused by now (by a database backend,
        # say).  Only a process still running our worker script is ours to kill.
        try:
            ours = any(arg.endswith(WORKER.name) for arg in psutil.Process(pid).cmdline())
        except psutil.Error:
            continue
        if ours:
            kill_pid(pid)


@pytest.fixture
def sqlite_setup(tmp_path: Path) -> Iterator[Setup]:
    setup = Setup(tmp_path, f"sqlite:///{tmp_path / 'adw.db'}")
    Store.open(setup.store_url).close()  # migrate once, before any coordinator starts
    yield setup
    _kill_leftover_workers(setup)


@pytest.fixture
def pg_setup(tmp_path: Path) -> Iterator[Setup]:
    """One fresh PostgreSQL database for this test (dropped afterwards); fails if the server is down."""
    admin = sa.create_engine(PG_ADMIN_URL)
    try:
        with admin.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not reachable ({exc.orig}); set ADW_TEST_PG_URL", pytrace=False)
    finally:
        admin.dispose()
    with scratch_pg_database() as url:
        setup = Setup(tmp_path, url)
        Store.open(url).close()
        try:
            yield setup
        finally:
            _kill_leftover_workers(setup)


@pytest.fixture
def open_store() -> Iterator[Callable[[str], Store]]:
    """``open_store(url)``: the test's own view of the store, closed at teardown."""
    opened: list[Store] = []

    def open_(url: str) -> Store:
        s = Store.open(url)
        opened.append(s)
        return s

    yield open_
    for s in opened:
        s.close()
