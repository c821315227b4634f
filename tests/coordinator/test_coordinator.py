"""The coordinator in-process, on a real SQLite store and real worker subprocesses (the dry-run agent).

A settable clock drives cooldowns and leases, so circuit-breaker timing is exact and
no test sleeps for it.
"""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import pytest

from adw_modules.config.schema import load_config
from adw_modules.coordinator import Coordinator
from adw_modules.outcomes import ErrorKind
from adw_modules.queue import health
from adw_modules.queue.store import Store
from adw_modules.queue.tasks import CircuitState, TaskState
from adw_modules.sources.local import enqueue_local
from tests.paths import REPO

AGENT = REPO / "tools" / "dry-run-agent.py"
T0 = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


def provider(name: str, env: str = "", extra: str = "", args: str = "") -> str:
    return textwrap.dedent(
        f"""
        [providers.{name}]
        command_template = ["{AGENT}", "--model", "{{model}}", "--output-format", "stream-json", "--verbose"{args}]
        prompt_stdin = true
        env = {{ {env} }}
        timeout = 30
        idle_timeout = 10
        {extra}
        """
    )


def make(tmp_path: Path, providers: str, routing: str, coordinator: str = "") -> tuple[Coordinator, Store, Clock]:
    path = tmp_path / "config.toml"
    path.write_text(
        providers
        + textwrap.dedent(routing)
        + textwrap.dedent(
            f"""
            [coordinator]
            name = "test"
            max_concurrency = 4
            retry_base_s = 10
            retry_max_s = 10
            retry_jitter = 0
            state_dir = "state"
            {coordinator}
            """
        )
    )
    config = load_config(path)
    store = Store.open(f"sqlite:///{tmp_path / 'adw.db'}")
    clock = Clock()
    coord = Coordinator(config, store, clock=clock)
    coord.startup()
    return coord, store, clock


def run_all(coord: Coordinator) -> None:
    """Dispatch until nothing more starts, waiting for each wave of attempts to end."""
    for _ in range(20):
        started = coord.dispatch()
        assert coord.wait_idle(30), "attempts did not finish"
        if not started:
            return
    raise AssertionError("dispatch kept starting attempts")


ROUTE_A_THEN_B = """
[routing]
enabled = true
default_provider = "a"
default_model = "claude-haiku-4-5"
fallback = ["b:claude-haiku-4-5"]
"""


def test_rate_limit_fails_over_at_once_and_cooldown_honours_retry_after(tmp_path: Path) -> None:
    state = tmp_path / "a.count"
    coord, store, clock = make(
        tmp_path,
        provider(
            "a",
            f'ADW_DRY_RUN_FAIL = "rate_limit@1", ADW_DRY_RUN_STATE = "{state}", ADW_DRY_RUN_RETRY_AFTER = "90", '
            'ADW_DRY_RUN_RETRY_DELAY_MS = "5000"',
        )
        + provider("b"),
        ROUTE_A_THEN_B,
    )
    task = enqueue_local(store, "fix it")
    run_all(coord)
    done = store.get_task(task.id)
    assert done is not None and done.state is TaskState.SUCCEEDED and done.retry_count == 0
    first, second = store.attempts_for(task.id)
    assert (first.provider, first.outcome, second.provider, second.outcome) == ("a", "rate_limited", "b", "success")
    assert second.failover_from == "a:claude-haiku-4-5"
    # early abort: the CLI would have waited 5 s before its next retry
    assert (first.ended_at - first.started_at).total_seconds() < 4  # type: ignore[operator]
    a = store.provider_states()["a"]
    assert a.circuit is CircuitState.OPEN and a.cooldown_until == T0 + dt.timedelta(seconds=90)

    # While A cools down, new work goes straight to B.
    t2 = enqueue_local(store, "second")
    run_all(coord)
    assert [x.provider for x in store.attempts_for(t2.id)] == ["b"]

    # After the cooldown A gets one half-open trial; it succeeds (the injected 429 was only the first call).
    clock.advance(91)
    t3 = enqueue_local(store, "third")
    run_all(coord)
    assert [x.provider for x in store.attempts_for(t3.id)] == ["a"]
    a = store.provider_states()["a"]
    assert a.circuit is CircuitState.CLOSED and a.cooldown_until is None and a.probe_attempt_id is None
    kinds = [e["kind"] for e in store.events(limit=100)]
    assert "provider.circuit" in kinds


def test_failed_trial_reopens_the_circuit_for_longer(tmp_path: Path) -> None:
    coord, store, clock = make(
        tmp_path,
        provider("a", 'ADW_DRY_RUN_FAIL = "rate_limit", ADW_DRY_RUN_RETRY_DELAY_MS = "1"') + provider("b"),
        ROUTE_A_THEN_B,
        coordinator="",
    )
    enqueue_local(store, "one")
    run_all(coord)
    first_until = store.provider_states()["a"].cooldown_until
    assert first_until == T0 + dt.timedelta(seconds=30)  # no retry-after given: base cooldown
    clock.advance(31)
    enqueue_local(store, "two")
    run_all(coord)
    a = store.provider_states()["a"]
    assert a.circuit is CircuitState.OPEN and a.trips == 2
    assert a.cooldown_until == clock.now + dt.timedelta(seconds=60)


def test_every_target_down_waits_and_says_why(tmp_path: Path) -> None:
    coord, store, _clock = make(
        tmp_path,
        provider(
            "a", 'ADW_DRY_RUN_FAIL = "rate_limit", ADW_DRY_RUN_RETRY_AFTER = "120", ADW_DRY_RUN_RETRY_DELAY_MS = "1"'
        ),
        """
        [routing]
        default_provider = "a"
        default_model = "claude-haiku-4-5"
        """,
    )
    task = enqueue_local(store, "patient")
    run_all(coord)
    t = store.get_task(task.id)
    assert t is not None and t.state is TaskState.RETRY_WAIT and t.retry_count == 0
    assert t.wait_reason is not None and "no usable target" in t.wait_reason and "cooling down until" in t.wait_reason
    assert t.not_before == T0 + dt.timedelta(seconds=120)  # back exactly when A's cooldown ends
    assert len(store.attempts_for(task.id)) == 1


def test_task_level_failure_retries_with_backoff_and_retry_count_feeds_the_router(tmp_path: Path) -> None:
    coord, store, clock = make(
        tmp_path,
        provider("a", 'ADW_DRY_RUN_FAIL = "crash"') + provider("b"),
        """
        [routing]
        enabled = true
        default_provider = "a"
        default_model = "claude-sonnet-4-5"
        [[routing.rules]]
        name = "retry-use-haiku"
        priority = 95
        conditions = { retry_count = { gte = 1 } }
        provider = "b"
        model = "claude-haiku-4-5"
        """,
    )
    task = enqueue_local(store, "flaky")
    run_all(coord)
    t = store.get_task(task.id)
    assert t is not None and t.state is TaskState.RETRY_WAIT and t.retry_count == 1
    assert t.not_before == T0 + dt.timedelta(seconds=10)
    coord.dispatch()
    assert coord.running() == 0  # backoff not over yet
    clock.advance(10)
    run_all(coord)
    t = store.get_task(task.id)
    attempts = store.attempts_for(task.id)
    assert t is not None and t.state is TaskState.SUCCEEDED
    assert [(x.provider, x.model, x.rule, x.outcome) for x in attempts] == [
        ("a", "claude-sonnet-4-5", None, "crashed"),
        ("b", "claude-haiku-4-5", "retry-use-haiku", "success"),
    ]


def test_retries_exhausted_fail_with_last_error(tmp_path: Path) -> None:
    coord, store, clock = make(
        tmp_path,
        provider("a", 'ADW_DRY_RUN_FAIL = "crash"'),
        '[routing]\ndefault_provider = "a"\ndefault_model = "m"\n',
        coordinator="max_attempts = 2\n[health]\nfailure_threshold = 10",
    )
    task = enqueue_local(store, "doomed")
    run_all(coord)
    clock.advance(10)
    run_all(coord)
    t = store.get_task(task.id)
    assert t is not None and t.state is TaskState.FAILED and t.retry_count == 2
    assert t.last_error is not None and t.last_error.startswith("failed 2 times; last: a:m: ")


def test_cancel_kills_the_running_worker(tmp_path: Path) -> None:
    coord, store, clock = make(
        tmp_path, provider("a", 'ADW_DRY_RUN_FAIL = "hang"'), '[routing]\ndefault_provider = "a"\ndefault_model = "m"\n'
    )
    task = enqueue_local(store, "stuck")
    assert coord.dispatch() == 1
    assert store.request_cancel(task.id, clock()) is TaskState.RUNNING
    coord.heartbeat()
    assert coord.wait_idle(10)
    t = store.get_task(task.id)
    (att,) = store.attempts_for(task.id)
    assert t is not None and t.state is TaskState.CANCELLED and att.outcome == "cancelled"
    import psutil

    assert att.pid is not None and not psutil.pid_exists(att.pid)


def test_lost_lease_kills_worker_and_drops_its_result(tmp_path: Path) -> None:
    coord, store, clock = make(
        tmp_path,
        provider("a", 'ADW_DRY_RUN_FAIL = "hang"'),
        '[routing]\ndefault_provider = "a"\ndefault_model = "m"\n',
        coordinator="lease_s = 20\nheartbeat_s = 5",
    )
    task = enqueue_local(store, "stolen")
    assert coord.dispatch() == 1
    # Another coordinator sees the lease expire (this one "paused") and requeues the task.
    other = Coordinator(coord.config, store, clock=lambda: clock.now + dt.timedelta(seconds=21))
    other.name, other.owner = "other", "other/1"
    reaped = other.store.reap_expired(clock.now + dt.timedelta(seconds=21))
    assert [t.id for t, _ in reaped] == [task.id]
    coord.heartbeat()  # finds the lease gone: kills its worker, writes nothing
    assert coord.wait_idle(10)
    (att,) = store.attempts_for(task.id)
    assert att.outcome == "crashed" and "lease lost" in (att.error_message or "")
    t = store.get_task(task.id)
    assert t is not None and t.state is TaskState.QUEUED and t.owner is None


def test_provider_concurrency_limit_makes_tasks_wait_not_fail_over(tmp_path: Path) -> None:
    coord, store, _clock = make(
        tmp_path,
        provider("a", 'ADW_DRY_RUN_FAIL = "hang"', extra="max_concurrency = 1") + provider("b"),
        ROUTE_A_THEN_B,
    )
    first = enqueue_local(store, "one")
    second = enqueue_local(store, "two")
    assert coord.dispatch() == 1
    t2 = store.get_task(second.id)
    assert t2 is not None and t2.state is TaskState.QUEUED and "at max_concurrency 1" in (t2.wait_reason or "")
    assert store.attempts_for(second.id) == []
    coord.stop_all("shutdown")
    assert coord.wait_idle(10)
    t1 = store.get_task(first.id)
    assert t1 is not None and t1.state is TaskState.QUEUED and t1.retry_count == 0  # shutdown: not counted


def test_daily_budget_cap_skips_provider_like_a_cooling_one(tmp_path: Path) -> None:
    coord, store, _ = make(
        tmp_path,
        provider("a", extra="daily_budget_usd = 0.000001", args=', "--report-cost", "0.5"') + provider("b"),
        ROUTE_A_THEN_B,
    )
    enqueue_local(store, "spend")
    run_all(coord)
    assert store.spend_since(T0 - dt.timedelta(hours=1))["a"] == pytest.approx(0.5)
    task = enqueue_local(store, "over budget")
    run_all(coord)
    (att,) = store.attempts_for(task.id)
    assert att.provider == "b"
    routing = att.routing
    assert any("daily spend $0.50 reached its cap" in s["reason"] for s in routing["skipped"])


def test_startup_warns_about_rules_with_no_usable_target(tmp_path: Path) -> None:
    coord, _, _ = make(
        tmp_path,
        provider("a") + '[providers.ghost]\ncommand_template = ["adw-missing-cli"]\n',
        """
        [routing]
        enabled = true
        default_provider = "a"
        default_model = "m"
        [[routing.rules]]
        name = "ghostly"
        priority = 1
        provider = "ghost"
        model = "x"
        """,
    )
    assert coord.dead_rules() == [
        'rule "ghostly": every target is unavailable (ghost: adw-missing-cli not found on PATH)'
    ]


def test_task_budget_stops_a_round_and_a_fresh_round_gets_it_again(tmp_path: Path) -> None:
    coord, store, clock = make(
        tmp_path,
        provider("a", args=', "--report-cost", "0.5"'),
        '[routing]\ndefault_provider = "a"\ndefault_model = "m"\n',
        coordinator="task_budget_usd = 0.4",
    )
    task = enqueue_local(store, "costly")
    run_all(coord)  # the budget is checked before an attempt: this one may overspend it
    assert [a.cost_usd for a in store.attempts_for(task.id)] == [0.5]
    clock.advance(1)
    assert store.requeue_task(task.id, clock())  # `adw retry`: the same round
    run_all(coord)
    t = store.get_task(task.id)
    assert t is not None and t.state is TaskState.FAILED and t.last_error == "task budget spent"
    assert len(store.attempts_for(task.id)) == 1
    clock.advance(1)
    assert store.requeue_task(task.id, clock(), reset_retries=True)  # a follow-up: a fresh round
    run_all(coord)
    t = store.get_task(task.id)
    assert t is not None and t.state is TaskState.SUCCEEDED and t.round_started_at == T0 + dt.timedelta(seconds=2)
    assert len(store.attempts_for(task.id)) == 2


def test_a_task_that_failed_over_after_the_pass_read_health_is_routed_with_fresh_health(tmp_path: Path) -> None:
    """The race behind a flaky end-to-end test: a dispatch pass starts, then an attempt on
    provider a ends rate-limited (a cools down, the task is requeued at once) and the same pass
    claims the requeued task.  It must not go straight back to a: health is read under the claim."""
    coord, store, clock = make(tmp_path, provider("a") + provider("b"), ROUTE_A_THEN_B)
    task = enqueue_local(store, "fix it")
    claim = store.claim_and_start
    policy = coord.config.service.health

    def claim_after_a_failover(*args, **kwargs):
        # What the watcher thread does after the pass began and before its claim: the end and
        # the health are recorded, and the coordinator's provider view learns the new state.
        state = store.update_provider_state(
            "a", lambda s: health.on_failure(s, ErrorKind.RATE_LIMITED, clock(), policy, retry_after_s=90)
        )
        coord.view.stored(state)
        clock.advance(1)
        store.claim_and_start = claim  # type: ignore[method-assign]
        return claim(*args, **kwargs)

    store.claim_and_start = claim_after_a_failover  # type: ignore[method-assign]
    assert coord.dispatch() == 1
    assert coord.wait_idle(30)
    (attempt,) = store.attempts_for(task.id)
    assert attempt.provider == "b"
    assert store.provider_states()["a"].cooldown_until is not None
