"""Row <-> record mapping: database rows to ``Task`` / ``Attempt`` / ``ProviderState``, and the
column values the writes share."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping

from adw_modules.queue.store.schema import tasks
from adw_modules.queue.tasks import (
    Attempt,
    AttemptEnd,
    CircuitState,
    NewEvent,
    ProviderState,
    Task,
    TaskState,
)

# The state column's value for a running task: every fenced write compares against it.
RUNNING_STATE = TaskState.RUNNING.value


def task_record(row: RowMapping) -> Task:
    """A ``tasks`` row as a ``Task``."""
    return Task(
        id=row["id"],
        source=row["source"],
        external_id=row["external_id"],
        title=row["title"],
        body=row["body"],
        labels=list(row["labels"] or []),
        priority=row["priority"],
        repo=row["repo"],
        url=row["url"],
        state=TaskState(row["state"]),
        retry_count=row["retry_count"],
        attempt_count=row["attempt_count"],
        round_started_at=row["round_started_at"],
        not_before=row["not_before"],
        wait_reason=row["wait_reason"],
        last_error=row["last_error"],
        last_error_kind=row["last_error_kind"],
        owner=row["owner"],
        lease_expires_at=row["lease_expires_at"],
        current_attempt_id=row["current_attempt_id"],
        excluded_targets=list(row["excluded_targets"] or []),
        cancel_requested=bool(row["cancel_requested"]),
        cancel_reason=row["cancel_reason"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def attempt_record(row: RowMapping) -> Attempt:
    """An ``attempts`` row as an ``Attempt``."""
    return Attempt(
        id=row["id"],
        task_id=row["task_id"],
        number=row["number"],
        provider=row["provider"],
        model=row["model"],
        rule=row["rule"],
        routing=dict(row["routing"] or {}),
        config_fingerprint=row["config_fingerprint"],
        owner=row["owner"],
        host=row["host"],
        pid=row["pid"],
        pgid=row["pgid"],
        create_time=row["create_time"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        state=row["state"],
        outcome=row["outcome"],
        error_kind=row["error_kind"],
        error_message=row["error_message"],
        input_tokens=row["input_tokens"],
        output_tokens=row["output_tokens"],
        cache_read_tokens=row["cache_read_tokens"],
        cache_write_tokens=row["cache_write_tokens"],
        cost_usd=row["cost_usd"],
        cost_source=row["cost_source"],
        log_path=row["log_path"],
        session_id=row["session_id"],
        result_text=row["result_text"],
        failover_from=row["failover_from"],
        exit_code=row["exit_code"],
        stderr_tail=row["stderr_tail"],
        model_usage=dict(row["model_usage"] or {}),
    )


def provider_state_record(row: Mapping[Any, Any]) -> ProviderState:
    """A ``provider_state`` row as a ``ProviderState``."""
    return ProviderState(
        provider=row["provider"],
        circuit=CircuitState(row["circuit"]),
        cooldown_until=row["cooldown_until"],
        cooldown_reason=row["cooldown_reason"],
        trips=row["trips"],
        consecutive_failures=row["consecutive_failures"],
        probe_attempt_id=row["probe_attempt_id"],
        disabled_reason=row["disabled_reason"],
        updated_at=row["updated_at"],
        recent=[bool(x) for x in row["recent"] or []],
    )


def provider_state_values(state: ProviderState, now: dt.datetime) -> dict[str, Any]:
    """The ``provider_state`` column values that store ``state`` (``now`` if it has no ``updated_at``)."""
    return {
        "circuit": CircuitState(state.circuit).value,
        "cooldown_until": state.cooldown_until,
        "cooldown_reason": state.cooldown_reason,
        "trips": state.trips,
        "consecutive_failures": state.consecutive_failures,
        "probe_attempt_id": state.probe_attempt_id,
        "disabled_reason": state.disabled_reason,
        "updated_at": state.updated_at or now,
        "recent": [bool(x) for x in state.recent],
    }


def finished_attempt_values(end: AttemptEnd, now: dt.datetime) -> dict[str, Any]:
    """The ``attempts`` column values of an attempt that ended as ``end`` says."""
    return {
        "state": "finished",
        "ended_at": now,
        "outcome": end.outcome,
        "error_kind": end.error_kind,
        "error_message": end.error_message,
        "input_tokens": end.input_tokens,
        "output_tokens": end.output_tokens,
        "cache_read_tokens": end.cache_read_tokens,
        "cache_write_tokens": end.cache_write_tokens,
        "cost_usd": end.cost_usd,
        "cost_source": end.cost_source,
        "log_path": end.log_path,
        "session_id": end.session_id,
        "result_text": end.result_text,
        "exit_code": end.exit_code,
        "stderr_tail": end.stderr_tail,
        "model_usage": {model: dict(usage) for model, usage in end.model_usage.items()} or None,
    }


def crashed_attempt_values(message: str, now: dt.datetime) -> dict[str, Any]:
    """The ``attempts`` column values of an attempt the store ends as crashed (reaped, orphaned)."""
    return {
        "state": "finished",
        "ended_at": now,
        "outcome": "crashed",
        "error_kind": "crashed",
        "error_message": message,
    }


def lease_clock(sqlite: bool, now: dt.datetime) -> Any:
    """What leases are compared with: the database's clock on PostgreSQL (coordinators on
    several hosts must not reap each other by a skewed host clock), ``now`` on SQLite (one host)."""
    return now if sqlite else sa.func.now()


def lease_value(sqlite: bool, lease_until: dt.datetime, now: dt.datetime | None) -> Any:
    """A lease as stored: ``lease_until`` on SQLite; on PostgreSQL the same length counted from
    the database's clock (when ``now`` says where the caller's clock stands)."""
    if sqlite or now is None or lease_until.tzinfo is None:
        return lease_until  # (a naive datetime is refused by the column type, as everywhere)
    return sa.func.now() + sa.literal(lease_until - now, sa.Interval())


# Clears everything that ties a task to an owner; the "lease" check constraint demands it
# whenever a task leaves the running state.
UNOWNED_VALUES: dict[str, Any] = {"owner": None, "lease_expires_at": None, "current_attempt_id": None}


def claim_values(owner: Any, lease: Any, now: Any) -> dict[str, Any]:
    """What claiming writes on a task: running under ``owner`` with ``lease`` (as stored:
    ``lease_value``, or a bound parameter), attempt_count + 1, no wait reason (cancel_requested
    is left as it is).  Values or bound parameters alike."""
    return {
        "state": RUNNING_STATE,
        "owner": owner,
        "lease_expires_at": lease,
        "attempt_count": tasks.c.attempt_count + 1,
        "wait_reason": None,
        "updated_at": now,
    }


def claimed_view(task: Task, owner: str, lease_until: dt.datetime, now: dt.datetime) -> Task:
    """``task`` as claiming it will make it (what a claimer decides on, before the UPDATE)."""
    return dataclasses.replace(
        task,
        state=TaskState.RUNNING,
        owner=owner,
        lease_expires_at=lease_until,
        attempt_count=task.attempt_count + 1,
        wait_reason=None,
        updated_at=now,
    )


def event_values(event: NewEvent, now: dt.datetime) -> dict[str, Any]:
    """An ``events`` row's values for ``event`` at ``now`` (without task and attempt)."""
    return {
        "at": now,
        "kind": event.kind,
        "message": event.message,
        "provider": event.provider,
        "data": None if event.data is None else dict(event.data),
    }
