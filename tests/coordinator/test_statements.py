"""The hot path's cost in the store, counted through the real coordinator on both backends: a
trivial task costs at most 8 statements in at most 3 transactions (claim and start; the pass's
worker pids; the end with its event and health), not counting periodic duties."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from adw_modules.config.schema import load_config
from adw_modules.coordinator import Coordinator
from adw_modules.queue.store import Store
from adw_modules.queue.tasks import TaskState
from adw_modules.sources.local import enqueue_local
from tests.coordinator.harness import Setup, require_postgres, scratch_pg_database

TASKS = 24


def _count_per_task(root: Path, url: str) -> tuple[float, float, Counter[str]]:
    setup = Setup(root, url)
    config = load_config(setup.config("c", max_concurrency=4))
    store = Store.open(url)
    try:
        coord = Coordinator(config, store)
        coord.startup()
        # Periodic (every 2 s, whatever the number of tasks): not part of a task's cost.
        coord.reconcile_if_due = lambda now: None  # type: ignore[method-assign]
        ids = [enqueue_local(store, f"task {n}").id for n in range(TASKS)]
        seen: Counter[str] = Counter()

        def statement(conn: Any, cursor: Any, text: str, *args: Any) -> None:
            seen[" ".join(text.split()[:3])] += 1

        def begin(conn: Any) -> None:
            seen["(transaction)"] += 1

        sa.event.listen(store.engine, "before_cursor_execute", statement)
        sa.event.listen(store.engine, "begin", begin)
        for _ in range(TASKS):
            started = coord.dispatch()
            assert coord.wait_idle(60)
            if not started:
                break
        sa.event.remove(store.engine, "before_cursor_execute", statement)
        sa.event.remove(store.engine, "begin", begin)
        assert all(t is not None and t.state is TaskState.SUCCEEDED for t in map(store.get_task, ids))
    finally:
        store.close()
    statements = sum(n for k, n in seen.items() if k != "(transaction)" and not k.startswith("BEGIN"))
    return statements / TASKS, seen["(transaction)"] / TASKS, seen


def _check(root: Path, url: str) -> None:
    statements, transactions, seen = _count_per_task(root, url)
    shown = "\n".join(f"{n / TASKS:6.2f}  {k}" for k, n in seen.most_common())
    assert statements <= 8, f"{statements:.2f} statements per task:\n{shown}"
    assert transactions <= 3, f"{transactions:.2f} transactions per task:\n{shown}"
    # None of the per-pass provider queries the in-memory picture replaced.
    assert not any("provider_state" in k or "count(*)" in k for k in seen), shown


def test_a_trivial_task_costs_few_statements_on_sqlite(tmp_path: Path) -> None:
    _check(tmp_path, f"sqlite:///{tmp_path / 'adw.db'}")


@pytest.mark.postgres
def test_a_trivial_task_costs_few_statements_on_postgresql(tmp_path: Path) -> None:
    require_postgres()
    with scratch_pg_database() as url:
        _check(tmp_path, url)
