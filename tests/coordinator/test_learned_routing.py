"""Issue 16 in the coordinator: on a real store (SQLite and PostgreSQL) and real worker
subprocesses (the dry-run agent), ``pick = "learned"`` shifts traffic to the better-value
candidate as attempts end, a restarted coordinator starts from what the store remembers, and
``adw stats``' library function reports the same history.

The cheap candidate always fails (``max_turns``: the task fails, no retry), the dear one
succeeds.  With ``explore = 0`` the choice is the exploiting one, so the sequence is exact:
the cheap candidate is tried until its optimistic P(success) falls below ``min_success``
(4 failures with a [1, 1] prior and min_success 0.5), then every task goes to the dear one.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from adw_modules.config.schema import load_config
from adw_modules.coordinator import Coordinator
from adw_modules.dispatch import Load, Release
from adw_modules.ops.stats import outcome_stats
from adw_modules.queue.store import Store
from adw_modules.sources.local import enqueue_local
from tests.coordinator.harness import scratch_pg_database
from tests.coordinator.test_coordinator import Clock, provider

CHEAP, DEAR = "cheap:claude-haiku-4-5", "dear:claude-opus-4-1"
CONFIG = f"""
[routing]
enabled = true
default_provider = "dear"
default_model = "claude-opus-4-1"

[[routing.rules]]
name = "learn"
priority = 1
model_select = {{ pick = "learned", candidates = ["{CHEAP}", "{DEAR}"], min_success = 0.5, explore = 0 }}

[learning]
seed = 5

[coordinator]
name = "test"
max_concurrency = 1
state_dir = "state"
"""


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'adw.db'}"
        return
    with scratch_pg_database() as url:
        yield url


def coordinator(tmp_path: Path, store: Store) -> Coordinator:
    path = tmp_path / "config.toml"
    path.write_text(
        provider("cheap", 'ADW_DRY_RUN_FAIL = "max_turns"', args=', "--report-cost", "0.01"')
        + provider("dear", args=', "--report-cost", "0.50"')
        + textwrap.dedent(CONFIG)
    )
    coord = Coordinator(load_config(path), store, clock=Clock())
    coord.startup()
    return coord


def run_one(coord: Coordinator, store: Store, title: str) -> str:
    task = enqueue_local(store, title)
    coord.dispatch()
    assert coord.wait_idle(30), "the attempt did not finish"
    (attempt,) = store.attempts_for(task.id)
    return f"{attempt.provider}:{attempt.model}"


def test_traffic_shifts_to_the_better_value_candidate_and_survives_a_restart(tmp_path: Path, store_url: str) -> None:
    store = Store.open(store_url)
    with contextlib.closing(store):
        coord = coordinator(tmp_path, store)
        try:
            picks = [run_one(coord, store, f"task {i}") for i in range(7)]
        finally:
            coord.shutdown()
        assert picks == [CHEAP] * 4 + [DEAR] * 3
        (attempt,) = store.attempts_for(7)
        assert "→ dear:claude-opus-4-1" in attempt.routing["selection"]
        assert attempt.routing["learn_key"] == "rule=learn"

        restarted = coordinator(tmp_path, store)  # its statistics come from the store
        try:
            assert run_one(restarted, store, "after the restart") == DEAR
            # Its own attempt was recorded as it ended; a reload (incremental within the hour,
            # then a full one) counts each attempt once.
            started = restarted.clock()
            for later, incremental in ((dt.timedelta(seconds=1), True), (dt.timedelta(hours=2), False)):
                restarted.reload_learning(started + later)
                assert (restarted.learning_full_at != started + later) is incremental
                dear, cheap = (restarted.learning.cell("rule=learn", t) for t in (DEAR, CHEAP))
                assert dear is not None and cheap is not None
                assert (dear.successes, dear.failures, cheap.successes, cheap.failures) == (4, 0, 0, 4)
        finally:
            restarted.shutdown()

        by_target = {g.key: g for g in outcome_stats(store, by="target", days=1, now=restarted.clock())}
        assert (by_target[CHEAP].attempts, by_target[CHEAP].successes) == (4, 0)
        assert (by_target[DEAR].attempts, by_target[DEAR].successes) == (4, 4)
        assert by_target[DEAR].cost_per_success == pytest.approx(0.50)
        assert by_target[CHEAP].cost_per_success is None


BALANCED = """
[routing]
enabled = true
default_provider = "a"
default_model = "claude-haiku-4-5"

[[routing.rules]]
name = "spread"
priority = 1
model_select = {{ pick = "{pick}", candidates = ["a:claude-haiku-4-5", "b:claude-haiku-4-5"]{extra} }}

[learning]
seed = 1

[coordinator]
name = "test"
state_dir = "state"
"""


@pytest.mark.parametrize(("pick", "extra"), [("weighted", ", weights = [1, 0.001]"), ("least-busy", "")])
def test_balanced_picks_honour_max_concurrency_and_rpm(tmp_path: Path, pick: str, extra: str) -> None:
    """The claim's own load reaches the router: a candidate at its provider's limit is passed over
    while the other is free (and the task would wait for it only if both were busy)."""
    path = tmp_path / "config.toml"
    path.write_text(
        provider("a", extra="max_concurrency = 1\nrpm = 2")
        + provider("b")
        + textwrap.dedent(BALANCED.format(pick=pick, extra=extra))
    )
    store = Store.open(f"sqlite:///{tmp_path / 'adw.db'}")
    with contextlib.closing(store):
        coord = Coordinator(load_config(path), store, clock=Clock())
        task = enqueue_local(store, "spread me")
        now = coord.clock()
        gates = coord.unavailable(now)

        def first(running: dict[str, int], started: dict[str, int]) -> str:
            routed = coord._route(task, now, gates, Load(running=running, started=started))
            assert not isinstance(routed, Release)
            return str(routed[1])

        assert first({}, {}) == "a:claude-haiku-4-5"  # idle: a (heaviest weight / listed first)
        assert first({"a": 1}, {}) == "b:claude-haiku-4-5"  # a at max_concurrency 1
        assert first({}, {"a": 2}) == "b:claude-haiku-4-5"  # a at 2 attempts per minute
        assert first({"a": 1, "b": 3}, {}) == "b:claude-haiku-4-5"  # a busy, b merely loaded
