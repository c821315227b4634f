from __future__ import annotations

import dataclasses
import datetime as dt
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adw_modules.config.schema import Target
from adw_modules.outcomes import ErrorKind, Outcome
from adw_modules.queue import health
from adw_modules.queue.health import HealthPolicy
from adw_modules.queue.retry import RetryStrategy
from adw_modules.queue.tasks import CircuitState, ProviderState, Task, TaskState
from adw_modules.queue.transitions import after_attempt

NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)
POLICY = HealthPolicy(failure_threshold=3, cooldown_base_s=30, cooldown_max_s=600)


def fail(state: ProviderState, kind: ErrorKind, now: dt.datetime = NOW, **kw) -> ProviderState:
    return health.on_failure(state, kind, now, POLICY, **kw)


def test_rate_limit_opens_at_once_until_retry_after() -> None:
    s = fail(ProviderState("p"), ErrorKind.RATE_LIMITED, retry_after_s=42, message="429")
    assert s.circuit is CircuitState.OPEN and s.cooldown_until == NOW + dt.timedelta(seconds=42)
    g = health.gate(s, NOW + dt.timedelta(seconds=41))
    assert not g.open and "cooling down until" in (g.reason or "") and "rate_limited: 429" in (g.reason or "")
    assert health.gate(s, NOW + dt.timedelta(seconds=42)).trial


def test_quota_reset_time_wins_and_unknown_retry_after_is_exponential() -> None:
    reset = NOW + dt.timedelta(hours=3)
    s = fail(ProviderState("p"), ErrorKind.QUOTA_EXHAUSTED, resets_at=reset.timestamp())
    assert s.cooldown_until == reset
    s1 = fail(ProviderState("p"), ErrorKind.RATE_LIMITED)
    assert s1.cooldown_until == NOW + dt.timedelta(seconds=30)
    s2 = fail(dataclasses.replace(s1, circuit=CircuitState.HALF_OPEN, cooldown_until=None), ErrorKind.RATE_LIMITED)
    assert s2.trips == 2 and s2.cooldown_until == NOW + dt.timedelta(seconds=60)


def test_transient_faults_open_after_threshold_only() -> None:
    s = ProviderState("p")
    for _ in range(2):
        s = fail(s, ErrorKind.OVERLOADED)
        assert s.circuit is CircuitState.CLOSED and health.gate(s, NOW).open
    s = fail(s, ErrorKind.OVERLOADED)
    assert s.circuit is CircuitState.OPEN


def test_success_resets_and_non_provider_faults_do_not_count() -> None:
    s = fail(fail(ProviderState("p"), ErrorKind.CRASHED), ErrorKind.CRASHED)
    s = fail(s, ErrorKind.MAX_TURNS)
    s = fail(s, ErrorKind.INVALID_MODEL)
    assert s.consecutive_failures == 2 and s.circuit is CircuitState.CLOSED
    s = health.on_success(s, NOW)
    assert s.consecutive_failures == 0 and s.recent == [False, False, True]
    assert health.success_rate(s) == pytest.approx(1 / 3)


def test_half_open_allows_exactly_one_trial_then_closes_or_reopens_longer() -> None:
    s = fail(ProviderState("p"), ErrorKind.RATE_LIMITED, retry_after_s=10)
    assert s.cooldown_until == NOW + dt.timedelta(seconds=30)  # a short retry-after never beats the backoff
    later = NOW + dt.timedelta(seconds=31)
    assert health.gate(s, later).trial
    t = health.start_trial(s, attempt_id=7, now=later)
    assert t is not None and t.circuit is CircuitState.HALF_OPEN
    assert health.start_trial(t, attempt_id=8, now=later) is None
    assert not health.gate(t, later).open and "trial attempt is running" in (health.gate(t, later).reason or "")
    assert health.on_success(t, later).circuit is CircuitState.CLOSED
    reopened = fail(t, ErrorKind.OVERLOADED, now=later)
    assert reopened.circuit is CircuitState.OPEN and reopened.trips == 2
    assert reopened.cooldown_until == later + dt.timedelta(seconds=60)


def test_auth_failure_disables_for_the_longest_cooldown() -> None:
    s = fail(ProviderState("p"), ErrorKind.AUTH_FAILED, message="Invalid API key")
    assert s.disabled_reason and "Invalid API key" in s.disabled_reason
    assert s.cooldown_until == NOW + dt.timedelta(seconds=600)
    assert "disabled until" in (health.gate(s, NOW).reason or "")


def test_recooling_never_shortens_a_deadline() -> None:
    s = fail(ProviderState("p"), ErrorKind.RATE_LIMITED, retry_after_s=500)
    s = fail(s, ErrorKind.RATE_LIMITED, retry_after_s=5)
    assert s.cooldown_until == NOW + dt.timedelta(seconds=500)
    assert s.trips == 2


@given(st.integers(1, 40))
def test_cooldown_is_capped(trips: int) -> None:
    assert POLICY.backoff(trips).total_seconds() <= 600


@given(st.integers(1, 30), st.floats(0, 1))
def test_retry_delay_is_capped_exponential_with_bounded_jitter(failures: int, jitter: float) -> None:
    r = RetryStrategy(max_attempts=5, base_s=10, max_s=300, jitter=jitter)
    curve = min(300, 10 * 2 ** (failures - 1))
    d = r.delay(failures, random.Random(failures))
    assert curve * (1 - jitter) - 1e-9 <= d <= curve + 1e-9


def _task(**kw) -> Task:
    base = dict(
        id=1,
        source="local",
        external_id="x",
        title="t",
        body="",
        labels=[],
        priority="normal",
        repo=None,
        url=None,
        state=TaskState.RUNNING,
        retry_count=0,
        attempt_count=1,
        not_before=None,
        wait_reason=None,
        last_error=None,
        last_error_kind=None,
        owner="o",
        lease_expires_at=None,
        current_attempt_id=1,
        excluded_targets=[],
        cancel_requested=False,
        created_at=NOW,
        updated_at=NOW,
    )
    base.update(kw)
    return Task(**base)  # type: ignore[arg-type]


T = Target("a", "m")
RETRY = RetryStrategy(max_attempts=3, base_s=10, max_s=100, jitter=0)


def test_transitions_by_policy() -> None:
    ok = after_attempt(_task(), Outcome(True), T, RETRY, 8, NOW)
    assert ok.state is TaskState.SUCCEEDED

    failover = after_attempt(_task(), Outcome(False, ErrorKind.RATE_LIMITED, "429"), T, RETRY, 8, NOW)
    assert failover.state is TaskState.QUEUED and failover.retry_count is None and failover.not_before is None

    bad_model = after_attempt(_task(), Outcome(False, ErrorKind.INVALID_MODEL), T, RETRY, 8, NOW)
    assert bad_model.excluded_targets == ["a:m"]

    retry = after_attempt(_task(), Outcome(False, ErrorKind.CRASHED, "boom"), T, RETRY, 8, NOW)
    assert retry.state is TaskState.RETRY_WAIT and retry.retry_count == 1
    assert retry.not_before == NOW + dt.timedelta(seconds=10) and retry.last_error == "a:m: boom"

    exhausted = after_attempt(_task(retry_count=2), Outcome(False, ErrorKind.CRASHED), T, RETRY, 8, NOW)
    assert exhausted.state is TaskState.FAILED and exhausted.retry_count == 3

    fatal = after_attempt(_task(), Outcome(False, ErrorKind.MAX_TURNS), T, RETRY, 8, NOW)
    assert fatal.state is TaskState.FAILED and fatal.last_error_kind == "max_turns"

    bounded = after_attempt(_task(attempt_count=8), Outcome(False, ErrorKind.RATE_LIMITED), T, RETRY, 8, NOW)
    assert bounded.state is TaskState.FAILED and "gave up after 8 attempts" in (bounded.last_error or "")
