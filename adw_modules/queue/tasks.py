"""The coordinator's records: tasks, attempts, provider health state, and what a finished attempt changes.

States of a task::

    queued ──claim──► running ──success──────────────► succeeded
      ▲                 │ ├──task-level failure──► retry_wait ──(not_before)──► claimable again
      │                 │ │                          (after max_attempts: failed)
      └──failover now───┘ ├──no usable target──► retry_wait (wait_reason says why; not counted)
                          └──cancel──► cancelled          failed/cancelled ──adw retry──► queued

``retry_count`` counts task-level failures (it feeds the router, so a retry rule can pick a
cheaper model); ``attempt_count`` counts every attempt started, failovers included.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

PRIORITY_RANK = {"critical": 0, "high": 1, "normal": 2, "low": 3}


class TaskState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    RETRY_WAIT = "retry_wait"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_STATES = frozenset({TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED})


class CircuitState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class NewTask:
    """What a source hands in.  (source, external_id) is the idempotency key."""

    source: str
    external_id: str
    title: str
    body: str = ""
    labels: tuple[str, ...] = ()
    priority: str = "normal"
    repo: str | None = None
    url: str | None = None


@dataclass
class Task:
    id: int
    source: str
    external_id: str
    title: str
    body: str
    labels: list[str]
    priority: str
    repo: str | None
    url: str | None
    state: TaskState
    retry_count: int
    attempt_count: int
    not_before: dt.datetime | None
    wait_reason: str | None
    last_error: str | None
    last_error_kind: str | None
    owner: str | None
    lease_expires_at: dt.datetime | None
    current_attempt_id: int | None
    excluded_targets: list[str]  # "provider:model" that failed this round (invalid model, context…)
    cancel_requested: bool
    created_at: dt.datetime
    updated_at: dt.datetime
    round_started_at: dt.datetime | None = None  # the current round's start; None: since creation
    cancel_reason: str | None = None  # who or what asked to cancel it ("issue closed", "adw cancel")

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["state"] = str(self.state)
        for key in ("not_before", "lease_expires_at", "created_at", "updated_at", "round_started_at"):
            d[key] = None if d[key] is None else d[key].isoformat()
        return d


@dataclass
class Attempt:
    id: int
    task_id: int
    number: int
    provider: str
    model: str
    rule: str | None
    routing: dict[str, Any]
    config_fingerprint: str
    owner: str
    host: str
    pid: int | None
    pgid: int | None
    create_time: float | None
    started_at: dt.datetime
    ended_at: dt.datetime | None
    state: str  # "running" | "finished"
    outcome: str | None = None
    error_kind: str | None = None
    error_message: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float | None = None
    cost_source: str | None = None
    log_path: str | None = None
    session_id: str | None = None
    result_text: str | None = None
    failover_from: str | None = None  # "provider:model" whose failure led here
    exit_code: int | None = None
    stderr_tail: str | None = None  # the CLI's last stderr lines, secrets masked
    model_usage: dict[str, dict[str, Any]] = field(default_factory=dict)  # per model: tokens and cost_usd

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        for key in ("started_at", "ended_at"):
            d[key] = None if d[key] is None else d[key].isoformat()
        return d


@dataclass(frozen=True)
class AttemptStart:
    """Fields known when an attempt begins."""

    provider: str
    model: str
    rule: str | None
    routing: dict[str, Any]
    config_fingerprint: str
    host: str
    failover_from: str | None = None


@dataclass(frozen=True)
class NewEvent:
    """An event row written in the same transaction as the change it tells of."""

    kind: str
    message: str
    provider: str | None = None
    data: dict[str, Any] | None = None


@dataclass(frozen=True)
class HealthChange:
    """A provider-health update written in the transaction that records the attempt's end."""

    provider: str
    apply: Callable[[ProviderState], ProviderState]  # quick, pure: runs under the row lock
    # Told the states before and after (as stored); may return an event to write with them.
    recorded: Callable[[ProviderState, ProviderState], NewEvent | None]
    pending: tuple[bool, ...] = ()  # deferred recent outcomes ``apply`` writes too


@dataclass(frozen=True)
class StartNow:
    """A claimed task starts its attempt in the claim's own transaction (nothing to prepare)."""

    start: AttemptStart
    event: str  # the attempt.started event's message


@dataclass(frozen=True)
class LeaveQueued:
    """Do not claim the task after all (its target is busy): the claim is rolled back."""

    reason: str


# What a claimer decides about the task it just took, inside the claim's transaction:
# start at once, leave it where it was, or (None) keep it claimed and prepare it first.
ClaimDecision = StartNow | LeaveQueued | None


@dataclass(frozen=True)
class Claimed:
    """What ``claim_and_start`` did with the task it picked: claimed it and started ``attempt``
    (``StartNow``), claimed it only (``attempt`` None), or left it unclaimed waiting for
    ``waiting`` (``announced``: that reason is new, and its event was written)."""

    task: Task
    attempt: Attempt | None = None
    waiting: str | None = None
    announced: bool = False


@dataclass(frozen=True)
class AttemptEnd:
    """Fields known when an attempt ends (from attempt.AttemptResult)."""

    outcome: str
    error_kind: str | None = None
    error_message: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float | None = None
    cost_source: str | None = None
    log_path: str | None = None
    session_id: str | None = None
    result_text: str | None = None
    exit_code: int | None = None
    stderr_tail: str | None = None
    model_usage: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Transition:
    """What the task becomes after an attempt ends (decided by the coordinator's policy)."""

    state: TaskState
    not_before: dt.datetime | None = None
    retry_count: int | None = None  # None: unchanged
    wait_reason: str | None = None
    last_error: str | None = None
    last_error_kind: str | None = None
    excluded_targets: list[str] | None = None  # None: unchanged


@dataclass
class ProviderState:
    """A provider's shared health, persisted so every coordinator on the store sees it."""

    provider: str
    circuit: CircuitState = CircuitState.CLOSED
    cooldown_until: dt.datetime | None = None
    cooldown_reason: str | None = None
    trips: int = 0  # consecutive cooldowns, for exponential growth
    consecutive_failures: int = 0
    probe_attempt_id: int | None = None  # the single half-open trial
    disabled_reason: str | None = None  # auth failed, binary missing: until an operator fixes it
    updated_at: dt.datetime | None = None
    recent: list[bool] = field(default_factory=list)  # last outcomes, newest last (success rate)

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["circuit"] = str(self.circuit)
        for key in ("cooldown_until", "updated_at"):
            d[key] = None if d[key] is None else d[key].isoformat()
        return d


@dataclass(frozen=True)
class ProviderSnapshot:
    """The providers as the store sees them at one moment (``Store.provider_snapshot``)."""

    states: dict[str, ProviderState]
    running: dict[str, int]  # attempts running now, all coordinators
    started: dict[str, list[dt.datetime]]  # start times in the last minute (rate-limited providers)
    spent: dict[str, float]  # known cost since the start of the day
