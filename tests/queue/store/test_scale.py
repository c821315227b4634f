"""A store with 100,000 tasks (most finished, with their attempts and events): claiming stays on
indexes and ``adw status`` answers within a second, on SQLite and PostgreSQL (issue 13, scale).

The claim's SQL is whatever the public methods send: a ``before_cursor_execute`` listener
records each statement with its parameters, and the test asks the database for its plan of
exactly that (SQLite ``EXPLAIN QUERY PLAN``, PostgreSQL ``EXPLAIN`` after ``ANALYZE``).
SQLite gets no ANALYZE: a real SQLite store has no statistics, so its plans must not need them.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from adw_modules.config.schema import load_config
from adw_modules.queue.store import Store
from adws import queue_views
from tests.queue.store.conftest import BACKENDS, scratch_pg_database
from tests.queue.store.scale_fill import Filled, fill

N_TASKS = 100_000
NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
LEASE = NOW + dt.timedelta(minutes=5)
CLAIM_INDEX = "ix_tasks_priority_rank_created_at_id"
# A full pass over a table (SQLite: "SCAN tasks", also "SCAN tasks USING INDEX x", a walk of a
# whole index; PostgreSQL: a sequential scan).  SEARCH (SQLite) and Index Scan (PG) are lookups.
SQLITE_FULL_PASS = re.compile(r"\bSCAN (tasks|cand_t|attempts)\b(?! USING (COVERING )?INDEX ix_tasks_priority_rank)")
PG_FULL_PASS = re.compile(r"Seq Scan on (tasks|attempts)\b")
STATUS_BUDGET_S = 1.0


@dataclass
class Big:
    store: Store
    filled: Filled


@pytest.fixture(scope="module", params=BACKENDS)
def big(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Big]:
    """One 100k-task store per backend for the whole module (filling it is the slow part)."""
    with _database(request, tmp_path_factory) as url:
        store = Store.open(url)
        try:
            filled = fill(store, N_TASKS, NOW, analyze=store.dialect == "postgresql")
            store.optimize()  # what a coordinator does at start and the retention job hourly (SQLite)
            yield Big(store, filled)
        finally:
            store.close()


@contextmanager
def _database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('scale') / 'store.db'}"
    else:
        with scratch_pg_database(request.getfixturevalue("pg_admin")) as url:
            yield url


def _statements(store: Store, call: Callable[[], Any]) -> tuple[Any, list[tuple[str, Any]]]:
    """What ``call`` returned, and the SELECT / UPDATE / WITH statements it sent, with their parameters."""
    sent: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "UPDATE", "WITH")):
            sent.append((statement, params))

    sa.event.listen(store.engine, "before_cursor_execute", record)
    try:
        result = call()
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", record)
    assert sent, "the call sent no query"
    return result, sent


def _plan(store: Store, statement: str, params: Any) -> str:
    """The database's plan for exactly this statement and these parameters (nothing is executed)."""
    prefix = "EXPLAIN QUERY PLAN " if store.dialect == "sqlite" else "EXPLAIN "
    with store.engine.connect() as conn:
        rows = conn.exec_driver_sql(prefix + statement, params).all()
        conn.rollback()
    return "\n".join(str(r[-1] if store.dialect == "sqlite" else r[0]) for r in rows)


def _claim_calls(store: Store) -> dict[str, Callable[[], Any]]:
    first_queued = 7  # scale_fill: task i is queued when i % 200 == 7
    return {
        "claimable_tasks": lambda: store.claimable_tasks(NOW, 20),
        "claimable_tasks excluding": lambda: store.claimable_tasks(NOW, 20, exclude_ids=[first_queued, 207]),
        "claim_task": lambda: store.claim_task("scale-test", LEASE, NOW),
        "claim_task excluding": lambda: store.claim_task("scale-test", LEASE, NOW, exclude_ids=[first_queued]),
        "claim_task of one task": lambda: store.claim_task("scale-test", LEASE, NOW, task_id=first_queued + 200),
        "claim_and_start": lambda: store.claim_and_start("scale-test", LEASE, NOW, lambda t, p: None),
    }


def test_the_claim_reads_use_indexes_not_a_pass_over_the_tasks(big: Big) -> None:
    store = big.store
    full_pass = SQLITE_FULL_PASS if store.dialect == "sqlite" else PG_FULL_PASS
    lookup = "USING" if store.dialect == "sqlite" else "Index"
    for name, call in _claim_calls(store).items():
        expected = store.claimable_tasks(NOW, 1)
        result, sent = _statements(store, call)
        if name == "claim_task":  # the claim takes what claimable_tasks said comes first
            assert result is not None and result.id == expected[0].id
        for statement, params in sent:
            plan = _plan(store, statement, params)
            assert not full_pass.search(plan), f"{name}: a pass over a table at {N_TASKS} tasks:\n{plan}"
            assert lookup in plan, f"{name}: no index lookup:\n{plan}"


def test_the_claim_walks_the_claim_index_in_claim_order(big: Big) -> None:
    """No sort of every claimable task per claim: with a large backlog that is a pass over it."""
    store = big.store
    for name in ("claimable_tasks", "claim_task", "claim_and_start"):
        _, sent = _statements(store, _claim_calls(store)[name])
        plan = _plan(store, *sent[0])
        assert CLAIM_INDEX in plan, f"{name}: not on the claim index:\n{plan}"
        assert not re.search(r"TEMP B-TREE FOR ORDER BY|\bSort\b", plan), f"{name}: sorts:\n{plan}"


def _config(tmp_path: Path, url: str) -> Any:
    path = tmp_path / "config.toml"
    providers = "".join(
        f'[providers.{p}]\ncommand_template = ["/bin/true", "{{model}}"]\n'
        f'[providers.{p}.models.{m}]\ntier = "fast"\ncapabilities = ["code"]\n'
        for p, m in (("alpha", "a-small"), ("beta", "b-mid"), ("gamma", "g-1"))
    )
    routing = '[routing]\nenabled = true\ndefault_provider = "alpha"\ndefault_model = "a-small"\n'
    path.write_text(providers + routing + f'[store]\nurl = "{url}"\n')
    return load_config(path)


def _best_of(runs: int, call: Callable[[], Any]) -> tuple[float, Any]:
    """The fastest of ``runs`` wall times (a busy machine only ever adds time) and the last result."""
    best, result = float("inf"), None
    for _ in range(runs):
        start = time.perf_counter()
        result = call()
        best = min(best, time.perf_counter() - start)
    return best, result


def test_status_answers_within_a_second(big: Big, tmp_path: Path) -> None:
    store = big.store
    config = _config(tmp_path, store.engine.url.render_as_string(hide_password=False))
    wall, data = _best_of(3, lambda: queue_views.status_data(config, store, now=NOW))
    assert sum(sum(row.values()) for row in data["queue"].values()) == big.filled.tasks
    assert len(data["running"]) >= big.filled.running_tasks
    assert wall < STATUS_BUDGET_S, f"status took {wall:.2f} s at {N_TASKS} tasks"


def test_usage_by_label_groups_in_the_database(big: Big) -> None:
    """Every task's labels, at 100k tasks (it once sent one bound parameter per task: PostgreSQL
    refuses more than 65,535)."""
    rows = {r["key"]: r for r in big.store.usage("label")}
    assert rows["adw"]["attempts"] == big.filled.attempts  # every task has the label adw
    assert 0 < rows["bug"]["attempts"] < rows["adw"]["attempts"]
