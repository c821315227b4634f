"""Instant pick-up, end to end: ``adw enqueue`` from another process wakes an idle ``adw run``.

The coordinator's dispatch tick is set to an hour, so a task that starts within the test's
wait was started by the wake-up (PostgreSQL LISTEN/NOTIFY; a FIFO beside the SQLite file), not
by the safety-net tick.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from tests.coordinator.harness import Coord, Setup, adw, coordinators, require_postgres, scratch_pg_database, wait_for

HOUR = 3600


def _ran(setup: Setup, task_id: int) -> bool:
    return setup.log.done()[task_id] == 1


def _enqueue_wakes_the_coordinator(root: Path, store_url: str) -> None:
    setup = Setup(root, store_url)
    config = setup.config("c", dispatch_interval_s=HOUR, heartbeat_s=5, reap_interval_s=HOUR)
    with coordinators() as running:
        coord = Coord(config)
        running.append(coord)
        coord.wait_event("service.started")
        # The first dispatch ran at start; from now on only a wake-up can start anything.
        coord.wait_event("store.listening")
        for n in range(3):
            done = adw(config, "enqueue", f"task {n}")
            assert done.returncode == 0, done.stderr
            task_id = int(done.stdout.strip().split()[-1])
            wait_for(functools.partial(_ran, setup, task_id), 30, f"task {task_id} to run after its enqueue")
        assert len(coord.find("attempt.started")) == 3


def test_enqueue_wakes_an_idle_coordinator_on_sqlite(tmp_path: Path) -> None:
    _enqueue_wakes_the_coordinator(tmp_path, f"sqlite:///{tmp_path / 'adw.db'}")


@pytest.mark.postgres
def test_enqueue_wakes_an_idle_coordinator_on_postgresql(tmp_path: Path) -> None:
    require_postgres()
    with scratch_pg_database() as url:
        _enqueue_wakes_the_coordinator(tmp_path, url)
