"""What the coordinator's steps hand each other while a claimed task becomes a running attempt.

``Coordinator._start`` is a pipeline: plan -> prepare -> take the trial slot -> launch ->
record.  Each step returns its product (``Plan``, ``Prepared``, a ``Slot``) or says why the
task cannot go on: a ``Release`` (the task goes back to the store in that state) or None (the
task is no longer ours: nothing to release).  ``Coordinator._finish`` likewise decides an
``Ending`` before anything is written.  Here are those values and the pure helpers the steps
share (routing attributes, budget, failover source, health update, row shapes): no store
access, no threads.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adw_modules.config.schema import Target
from adw_modules.outcomes import ErrorKind, Outcome, Policy
from adw_modules.queue import health
from adw_modules.queue.health import HealthPolicy
from adw_modules.queue.tasks import Attempt, AttemptEnd, ProviderState, Task, TaskState, Transition
from adw_modules.routing.router import Decision, TaskAttrs, estimate_tokens
from adw_modules.workers.attempt import AttemptResult, RunningAttempt
from adw_modules.workspace.worktrees import Changes, Worktree


def render_prompt(task: Task) -> str:
    """The default prompt of a task: its title, repository, labels and body."""
    labels = f"\nLabels: {', '.join(task.labels)}" if task.labels else ""
    where = f"\nRepository: {task.repo}" if task.repo else ""
    return f"# {task.title}\n{where}{labels}\n\n{task.body}".rstrip() + "\n"


@dataclass
class Gates:
    """One dispatch pass's view of provider health: skip ``down``; ``trials`` are half-open
    (an attempt there must take the single trial slot first)."""

    down: dict[str, str]
    until: dict[str, dt.datetime]  # when a down provider may come back, where known
    trials: set[str]


@dataclass
class Load:
    """Attempts running, and started in the last minute, per provider (across all coordinators)."""

    running: dict[str, int]
    started: dict[str, int]


@dataclass(frozen=True)
class Release:
    """Why a claimed task goes back instead of starting: the state it takes, the reason shown."""

    state: TaskState
    reason: str
    not_before: dt.datetime | None = None
    counted: bool = False  # counts toward max_total_attempts (a start that failed), unlike a wait


@dataclass
class Progress:
    """How far a start got, so a step that raises can give back what the earlier ones took."""

    trial_provider: str | None = None  # the half-open provider whose trial slot may be ours
    attempt_id: int | None = None  # the attempt row, once recorded
    supervised: bool = False  # the watcher owns the attempt from here on


@dataclass
class Plan:
    """Where a claimed task runs (the first usable target) and what it may still spend."""

    decision: Decision
    target: Target
    history: Callable[[], list[Attempt]]  # the task's attempts, read once and only if needed
    budget: float | None


@dataclass
class Prepared:
    """A planned task made ready to run; ``now`` is after preparing (git, GitHub may take long)."""

    prompt: str
    worktree: Worktree | None
    now: dt.datetime


@dataclass
class Slot:
    """A running attempt this coordinator owns."""

    task: Task
    attempt_id: int
    number: int
    target: Target
    rule: str | None
    running: RunningAttempt
    thread: threading.Thread | None = None
    stop_reason: str | None = None  # "cancelled" (operator), "shutdown", "lease lost"
    trial: bool = False
    worktree: Worktree | None = None
    health_recorded: bool = False
    reported_tokens: int = 0  # tokens so far, as last stored by the heartbeat
    failover_from: str | None = None  # the target of the attempt this one fails over from
    process_recorded: bool = False  # the worker's identity is in the store (first heartbeat)

    def process(self) -> tuple[int, int, float] | None:
        """The worker's (pid, pgid, create time), as the store keeps it."""
        ident = self.running.identity
        return None if ident is None else (ident.pid, ident.pgid, ident.create_time)


@dataclass
class Ending:
    """How a finished attempt is recorded: its (redacted) outcome and row, and the task's next state."""

    outcome: Outcome
    end: AttemptEnd
    transition: Transition


def started_message(target: Target, previous: str | None) -> Callable[[int], str]:
    """The attempt.started event's message, given the attempt's number."""
    return lambda number: f"attempt {number} on {target}" + (f" (failover from {previous})" if previous else "")


def task_attrs(task: Task) -> TaskAttrs:
    """What the router matches rules on."""
    return TaskAttrs(
        priority=task.priority,
        labels=frozenset(task.labels),
        retry_count=task.retry_count,
        repo=task.repo,
        source=task.source,
        prompt_tokens=estimate_tokens(task.title + task.body),
    )


def remaining_budget(task: Task, cap: float | None, history: Callable[[], list[Attempt]]) -> float | None:
    """What this round may still spend: a follow-up request starts with the whole budget."""
    if cap is None:
        return None
    since = task.round_started_at
    return cap - sum(a.cost_usd or 0.0 for a in history() if since is None or a.started_at >= since)


def failover_source(task: Task, history: Callable[[], list[Attempt]]) -> str | None:
    """The target the task's previous attempt failed on, when this attempt is its failover."""
    if task.attempt_count <= 1 or task.last_error_kind is None:
        return None
    try:
        kind = ErrorKind(task.last_error_kind)
    except ValueError:
        return None
    if Outcome(False, kind).policy not in (Policy.FAILOVER, Policy.DISABLE):
        return None
    finished = [a for a in history() if a.state == "finished"]
    return f"{finished[-1].provider}:{finished[-1].model}" if finished else None


def health_update(outcome: Outcome, now: dt.datetime, policy: HealthPolicy) -> Callable[[ProviderState], ProviderState]:
    """How an attempt's outcome changes its provider's health state."""
    if outcome.ok:
        return lambda s: health.on_success(s, now)
    kind = outcome.error_kind or ErrorKind.API_ERROR
    return lambda s: health.on_failure(
        s,
        kind,
        now,
        policy,
        message=outcome.message,
        retry_after_s=outcome.retry_after_s,
        resets_at=outcome.resets_at,
    )


def attempt_end(result: AttemptResult, redact: Callable[[str], str]) -> AttemptEnd:
    """The attempt row's end columns, every text a CLI produced masked by ``redact``."""
    d = result.to_dict()
    text = d["result_text"] and redact(d["result_text"])
    return AttemptEnd(
        outcome=d["outcome"],
        error_kind=d["error_kind"],
        error_message=d["error_message"] and redact(d["error_message"]),
        input_tokens=d["input_tokens"],
        output_tokens=d["output_tokens"],
        cache_read_tokens=d["cache_read_tokens"],
        cache_write_tokens=d["cache_write_tokens"],
        cost_usd=d["cost_usd"],
        cost_source=d["cost_source"],
        log_path=d["log_path"],
        session_id=d["session_id"] and redact(d["session_id"]),
        result_text=None if text is None else text[:20000],
        exit_code=d["exit_code"],
        stderr_tail=d["stderr_tail"] and redact(d["stderr_tail"])[-4000:],
        model_usage=d["model_usage"],
    )


def workspace_state(wt: Worktree, changes: Changes) -> dict[str, Any]:
    """What the task's source learns of the work kept in its worktree (``source_state.workspace``)."""
    return {
        "branch": wt.branch,
        "base_sha": wt.base_sha,
        "head_sha": changes.head_sha,
        "commits_ahead": changes.commits_ahead,
        "pushed": changes.pushed,
        "changed_files": changes.changed_files[:50],
    }


def short_error(exc: BaseException, limit: int = 300) -> str:
    """An exception as one short line: a database error's text carries its SQL and parameters
    (a worker's whole result), which belongs in the log, not in a task's reason."""
    first = (str(exc).strip().splitlines() or [""])[0]
    text = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def without_texts(end: AttemptEnd, transition: Transition, why: str) -> tuple[AttemptEnd, Transition]:
    """An attempt's end and transition with every text a worker produced left out: what is
    recorded when the store refused the full record (so the task moves on all the same)."""
    note = f"result not recorded: {why}"
    bare = dataclasses.replace(
        end,
        error_message=note,
        session_id=None,
        result_text=None,
        stderr_tail=None,
        log_path=None,
        model_usage={},
    )
    last_error = None if transition.last_error is None else note
    wait = None if transition.wait_reason is None else note
    return bare, dataclasses.replace(transition, last_error=last_error, wait_reason=wait)


def ensure_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def log_event(logger: logging.Logger, event: str, **fields: Any) -> None:
    """One structured log line: "event k=v …", the fields also as the record's data."""
    text = " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
    logger.info(f"{event} {text}", extra={"data": {"event": event, **fields}})
