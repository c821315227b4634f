"""What an attempt can end in, and what the coordinator does about each ending.

Every attempt of a task on one provider/model ends in exactly one ``Outcome``:
``success`` or one ``ErrorKind``.  Each kind maps to a ``Policy`` the coordinator
applies (retry the same target, fail over, disable the provider, fail the task).
Token counts are normalised here once so parsers of different CLIs agree:
``input_tokens`` never includes cache reads or cache writes.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field
from typing import Any, Literal


class ErrorKind(enum.StrEnum):
    RATE_LIMITED = "rate_limited"
    OVERLOADED = "overloaded"
    AUTH_FAILED = "auth_failed"
    QUOTA_EXHAUSTED = "quota_exhausted"
    INVALID_MODEL = "invalid_model"
    CONTEXT_TOO_LONG = "context_too_long"
    MAX_TURNS = "max_turns"
    BUDGET_EXCEEDED = "budget_exceeded"
    TIMEOUT = "timeout"
    STALLED = "stalled"
    CRASHED = "crashed"
    CANCELLED = "cancelled"
    # Beyond the list: an API error that names no better kind (HTTP 400/500 …),
    # and a CLI that could not be started at all (binary missing, not executable).
    API_ERROR = "api_error"
    LAUNCH_FAILED = "launch_failed"


class Policy(enum.StrEnum):
    RETRY = "retry"  # same target again, after backoff; counts against max_attempts
    FAILOVER = "failover"  # next target of the chain at once; the provider cools down
    DISABLE = "disable"  # provider is broken until an operator fixes it; fail over
    FAIL = "fail"  # no further attempt would help: the task fails


POLICIES: dict[ErrorKind, Policy] = {
    ErrorKind.RATE_LIMITED: Policy.FAILOVER,
    ErrorKind.OVERLOADED: Policy.RETRY,  # transient; the coordinator's breaker escalates repeats
    ErrorKind.AUTH_FAILED: Policy.DISABLE,
    ErrorKind.QUOTA_EXHAUSTED: Policy.FAILOVER,
    ErrorKind.INVALID_MODEL: Policy.FAILOVER,  # this target is wrong; other targets may be right
    ErrorKind.CONTEXT_TOO_LONG: Policy.FAILOVER,  # only a larger-context target can help
    ErrorKind.MAX_TURNS: Policy.FAIL,  # the agent's own limit, not a provider fault
    ErrorKind.BUDGET_EXCEEDED: Policy.FAIL,  # spending more is exactly what the cap forbids
    ErrorKind.TIMEOUT: Policy.RETRY,
    ErrorKind.STALLED: Policy.RETRY,  # CLIs hang silently on quota errors: retry, breaker escalates
    ErrorKind.CRASHED: Policy.RETRY,
    ErrorKind.CANCELLED: Policy.FAIL,
    ErrorKind.API_ERROR: Policy.RETRY,
    ErrorKind.LAUNCH_FAILED: Policy.DISABLE,
}

# Kinds that say something about the provider's health (feed cooldowns and circuit breakers).
PROVIDER_FAULTS: frozenset[ErrorKind] = frozenset(
    {
        ErrorKind.RATE_LIMITED,
        ErrorKind.OVERLOADED,
        ErrorKind.AUTH_FAILED,
        ErrorKind.QUOTA_EXHAUSTED,
        ErrorKind.STALLED,
        ErrorKind.LAUNCH_FAILED,
    }
)

CostSource = Literal["reported", "estimated"]


@dataclass
class Usage:
    """Token counts for one model (or the total).  input_tokens excludes cache reads/writes."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float | None = None

    def add(self, other: Usage) -> None:
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cache_read_tokens += other.cache_read_tokens
        self.cache_write_tokens += other.cache_write_tokens
        if other.cost_usd is not None:
            self.cost_usd = (self.cost_usd or 0.0) + other.cost_usd

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_read_tokens + self.cache_write_tokens


@dataclass
class StreamEvent:
    """One parsed line, as the runner's event callback sees it (for early abort).

    ``signal`` is set when the line itself says the attempt is failing, e.g. Claude's
    ``system/api_retry`` with a 429 or a ``rate_limit_event`` with status ``rejected``.
    """

    type: str
    subtype: str | None = None
    signal: ErrorKind | None = None
    retry_after_s: float | None = None
    resets_at: float | None = None  # unix seconds
    message: str | None = None
    terminal: bool = False


@dataclass
class StreamSummary:
    """What a parser learned from a whole transcript.  Built incrementally, constant memory."""

    format: str
    terminal: bool = False  # saw the CLI's terminal event (result / turn.completed / …)
    is_error: bool = False  # the terminal event (or an error event) reports failure
    error_kind: ErrorKind | None = None
    error_message: str | None = None
    api_status: int | None = None
    retry_after_s: float | None = None
    resets_at: float | None = None
    result_text: str | None = None
    session_id: str | None = None
    models: list[str] = field(default_factory=list)  # every model seen, in order of appearance
    main_model: str | None = None  # the model the run was for (see ``settle_usage``)
    num_turns: int | None = None
    duration_s: float | None = None
    usage: Usage = field(default_factory=Usage)
    per_model: dict[str, Usage] = field(default_factory=dict)
    cost_usd: float | None = None
    cost_source: CostSource | None = None
    events: int = 0
    skipped_lines: int = 0  # non-JSON, truncated or otherwise unreadable lines
    retry_events: int = 0  # e.g. Claude's system/api_retry lines seen

    def note_model(self, model: str | None, *, main: bool = False) -> None:
        """A model the run used; ``main`` for the one the CLI says the run is for (its init event)."""
        if model and model not in self.models:
            self.models.append(model)
        if main and model and self.main_model is None:
            self.main_model = model

    def settle_usage(self) -> None:
        """One rule for every format, applied once at the end of a transcript.

        With a per-model breakdown (Claude's ``modelUsage``, Gemini's ``stats.models``) the
        attempt's tokens are the sum over models: a CLI's top-level usage may cover the main
        model only (Claude's ``result.usage`` leaves out haiku side calls and subagents),
        while its reported cost covers them all.  The reported cost stays the CLI's total.
        The main model is the one the CLI named at start, else the one that wrote the most.
        """
        if self.per_model:
            total = Usage()
            for part in self.per_model.values():
                total.add(part)
            total.cost_usd = self.cost_usd if self.cost_usd is not None else total.cost_usd
            self.usage = total
        if self.main_model is None and self.per_model:
            # Most output; ties (a one-line answer next to a title call) go to the costlier model.
            self.main_model = max(self.per_model, key=lambda m: _weight(self.per_model[m]))
        if self.main_model is None and self.models:
            self.main_model = self.models[0]


def _weight(usage: Usage) -> tuple[int, float, int]:
    return usage.output_tokens, usage.cost_usd or 0.0, usage.total_tokens


@dataclass
class Outcome:
    """The single ending of one attempt."""

    ok: bool
    error_kind: ErrorKind | None = None
    message: str | None = None
    retry_after_s: float | None = None
    resets_at: float | None = None

    @property
    def name(self) -> str:
        return "success" if self.ok else str(self.error_kind)

    @property
    def policy(self) -> Policy | None:
        return None if self.ok or self.error_kind is None else POLICIES[self.error_kind]

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.name,
            "error_kind": None if self.error_kind is None else str(self.error_kind),
            "message": self.message,
            "retry_after_s": self.retry_after_s,
            "resets_at": self.resets_at,
        }


class NotReady(Exception):
    """A task cannot be prepared yet, and the source knows until when (e.g. GitHub said to come
    back later): the coordinator puts the task back to wait until ``until``, not at once."""

    def __init__(self, message: str, until: dt.datetime) -> None:
        super().__init__(message)
        self.until = until
