"""Provider health: cooldowns and a circuit breaker, as pure functions over ``ProviderState``.

    closed ──(rate limit / quota / N consecutive faults / auth)──► open (cooling down)
    open ──(cooldown over)──► half_open: exactly one trial attempt
    half_open ──trial succeeds──► closed        half_open ──trial fails──► open (longer)

A rate limit or quota answer opens the breaker at once: until the provider's own reset time
when it gave one, else for the longer of its retry-after and an exponentially growing cooldown.  Repeated
transient faults (overloaded, stalled, crashed …) open it after ``failure_threshold`` in a
row.  Auth failures and a missing binary open it for the longest cooldown and mark the
provider disabled: an operator has to fix something, and the half-open trial tells them
when it works again.  The store persists the state so every coordinator sees one truth.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass

from adw_modules.outcomes import ErrorKind
from adw_modules.queue.tasks import CircuitState, ProviderState

OPEN_AT_ONCE = frozenset({ErrorKind.RATE_LIMITED, ErrorKind.QUOTA_EXHAUSTED})
DISABLING = frozenset({ErrorKind.AUTH_FAILED, ErrorKind.LAUNCH_FAILED})
# Faults that say the provider (or its CLI) is unwell; task-level limits (max turns,
# budget), bad targets (invalid model, context) and cancellations say nothing about it.
COUNTED = frozenset(
    {
        ErrorKind.OVERLOADED,
        ErrorKind.STALLED,
        ErrorKind.CRASHED,
        ErrorKind.TIMEOUT,
        ErrorKind.API_ERROR,
    }
)
RECENT_WINDOW = 20


@dataclass(frozen=True)
class HealthPolicy:
    failure_threshold: int = 3
    cooldown_base_s: float = 30.0
    cooldown_max_s: float = 1800.0

    def backoff(self, trips: int) -> dt.timedelta:
        return dt.timedelta(seconds=min(self.cooldown_max_s, self.cooldown_base_s * 2 ** max(0, trips - 1)))


def _recent(state: ProviderState, ok: bool) -> list[bool]:
    return [*state.recent, ok][-RECENT_WINDOW:]


def on_success(state: ProviderState, now: dt.datetime) -> ProviderState:
    return dataclasses.replace(
        state,
        circuit=CircuitState.CLOSED,
        cooldown_until=None,
        cooldown_reason=None,
        trips=0,
        consecutive_failures=0,
        probe_attempt_id=None,
        disabled_reason=None,
        updated_at=now,
        recent=_recent(state, True),
    )


def on_failure(
    state: ProviderState,
    kind: ErrorKind,
    now: dt.datetime,
    policy: HealthPolicy,
    *,
    message: str | None = None,
    retry_after_s: float | None = None,
    resets_at: float | None = None,
) -> ProviderState:
    """The state after an attempt on this provider failed with ``kind``."""
    if kind not in OPEN_AT_ONCE | DISABLING | COUNTED:
        # Not the provider's fault; a half-open trial that ends this way proves nothing either.
        return dataclasses.replace(state, probe_attempt_id=None, updated_at=now)
    failures = state.consecutive_failures + 1
    new = dataclasses.replace(
        state,
        consecutive_failures=failures,
        probe_attempt_id=None,
        updated_at=now,
        recent=_recent(state, False),
    )
    trial_failed = state.circuit is CircuitState.HALF_OPEN
    if kind in OPEN_AT_ONCE or kind in DISABLING or trial_failed or failures >= policy.failure_threshold:
        trips = state.trips + 1
        until = now + policy.backoff(trips)
        if kind in DISABLING:
            until = now + dt.timedelta(seconds=policy.cooldown_max_s)
        elif kind in OPEN_AT_ONCE and resets_at is not None:
            until = max(now, dt.datetime.fromtimestamp(resets_at, dt.UTC))
        elif kind in OPEN_AT_ONCE and retry_after_s is not None:
            # A retry-after shorter than our own backoff is often the CLI's retry delay, not the
            # server's: honour the longer of the two (LiteLLM: max(Retry-After, cooldown)).
            until = max(until, now + dt.timedelta(seconds=retry_after_s))
        # Re-cooling may extend a deadline another coordinator set, never shorten it.
        if state.cooldown_until is not None and state.cooldown_until > until:
            until = state.cooldown_until
        reason = str(kind) + (f": {message}" if message else "")
        new = dataclasses.replace(
            new,
            circuit=CircuitState.OPEN,
            cooldown_until=until,
            cooldown_reason=reason[:300],
            trips=trips,
            disabled_reason=reason[:300] if kind in DISABLING else state.disabled_reason,
        )
    return new


@dataclass(frozen=True)
class Gate:
    """May work go to this provider now?  ``trial`` = only as the one half-open trial."""

    open: bool
    reason: str | None = None
    trial: bool = False
    until: dt.datetime | None = None


def gate(state: ProviderState | None, now: dt.datetime) -> Gate:
    if state is None or state.circuit is CircuitState.CLOSED:
        return Gate(True)
    if state.cooldown_until is not None and state.cooldown_until > now:
        when = state.cooldown_until.strftime("%Y-%m-%d %H:%M:%S UTC")
        what = "disabled" if state.disabled_reason else "cooling down"
        return Gate(False, f"{what} until {when} ({state.cooldown_reason})", until=state.cooldown_until)
    if state.probe_attempt_id is not None:
        return Gate(False, "circuit half-open: a trial attempt is running", until=None)
    return Gate(True, "circuit half-open: one trial attempt allowed", trial=True)


def start_trial(state: ProviderState, attempt_id: int, now: dt.datetime) -> ProviderState | None:
    """Take the single half-open trial slot; None if another attempt already holds it."""
    if state.probe_attempt_id is not None:
        return None
    return dataclasses.replace(state, circuit=CircuitState.HALF_OPEN, probe_attempt_id=attempt_id, updated_at=now)


def success_rate(state: ProviderState | None) -> float | None:
    if state is None or not state.recent:
        return None
    return sum(state.recent) / len(state.recent)
