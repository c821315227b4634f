"""The hot path's statements, built once and run with parameters.

Building a SQLAlchemy statement (``update(...).where(...).values(...)``) and computing its cache
key costs more CPU than SQLite takes to run it; a statement object built once keeps its
compiled form in the engine's cache and its cache key memoised, so each run only binds values.
Every statement here is what a task's claim, start and end run; the rest of the store builds
its statements per call (they run per pass or per operator command, not per task).

Parameter names start with ``b_`` (a bound name may not equal a column an UPDATE sets);
UPDATEs without ``.values()`` take their SET columns from the keys they are run with.
"""

from __future__ import annotations

import functools
from typing import Any

import sqlalchemy as sa

from adw_modules.queue.store.queue import claim_order, claimable_now
from adw_modules.queue.store.rows import RUNNING_STATE, claim_values
from adw_modules.queue.store.schema import attempts, events, tasks

INSERT_EVENT = sa.insert(events)
INSERT_ATTEMPT = sa.insert(attempts).returning(*attempts.c)


def next_attempt_id(sqlite: bool) -> Any:
    """The id the task's next attempt row will get, known before the row is written, so the
    claim (or start) sets the task's current_attempt_id in its own UPDATE."""
    if sqlite:
        # Under the write lock: what SQLite itself would pick for the rowid (max + 1).
        return sa.select(sa.func.coalesce(sa.func.max(attempts.c.id), 0) + 1).scalar_subquery()
    return sa.func.nextval(sa.func.pg_get_serial_sequence("attempts", "id"))


def lease_param(sqlite: bool) -> Any:
    """A lease as stored: ``b_lease`` on SQLite; on PostgreSQL ``now() + b_lease_len`` (the
    database's clock, see ``rows.lease_value``)."""
    if sqlite:
        return sa.bindparam("b_lease", type_=tasks.c.lease_expires_at.type)
    return sa.func.now() + sa.bindparam("b_lease_len", type_=sa.Interval())


@functools.cache
def pick(sqlite: bool, excluding: bool, one: bool) -> Any:
    """The next claimable task in claim order with its attempts so far (``b_now``; ``b_exclude``
    when ``excluding``; ``b_task`` when ``one``), locked on PostgreSQL (SKIP LOCKED)."""
    prior = sa.select(sa.func.count()).select_from(attempts).where(attempts.c.task_id == tasks.c.id).scalar_subquery()
    now = sa.bindparam("b_now", type_=tasks.c.not_before.type)
    query = sa.select(tasks, prior.label("prior_attempts")).where(claimable_now(tasks, now, sqlite=sqlite))
    if excluding:
        query = query.where(tasks.c.id.not_in(sa.bindparam("b_exclude", expanding=True)))
    if one:
        query = query.where(tasks.c.id == sa.bindparam("b_task"))
    query = query.order_by(*claim_order(tasks)).limit(1)
    if not sqlite:
        # Rows another claimer holds are theirs: take the next one instead of waiting.
        query = query.with_for_update(skip_locked=True, of=tasks)
    return query


@functools.cache
def claim(sqlite: bool, reserve_attempt: bool) -> Any:
    """Claim task ``b_task`` for ``b_owner`` (lease, attempt_count + 1, no wait reason, updated
    ``b_now``); with ``reserve_attempt`` its current_attempt_id is the next attempt id."""
    values = claim_values(
        sa.bindparam("b_owner"), lease_param(sqlite), sa.bindparam("b_now", type_=tasks.c.updated_at.type)
    )
    if reserve_attempt:
        values["current_attempt_id"] = next_attempt_id(sqlite)
    return sa.update(tasks).where(tasks.c.id == sa.bindparam("b_task")).values(**values).returning(*tasks.c)


@functools.cache
def end_task() -> Any:
    """Move the task whose current attempt is ``b_attempt`` on, fenced on ``b_owner``; its SET
    columns are the keys it is run with.  Returns the task's id."""
    of_attempt = sa.select(attempts.c.task_id).where(attempts.c.id == sa.bindparam("b_attempt")).scalar_subquery()
    return (
        sa.update(tasks)
        .where(
            tasks.c.id == of_attempt,
            tasks.c.owner == sa.bindparam("b_owner"),
            tasks.c.state == RUNNING_STATE,
            tasks.c.current_attempt_id == sa.bindparam("b_attempt"),
        )
        .returning(tasks.c.id)
    )


@functools.cache
def end_attempt() -> Any:
    """End running attempt ``b_attempt`` of ``b_owner``; SET columns from the keys it is run with."""
    return sa.update(attempts).where(
        attempts.c.id == sa.bindparam("b_attempt"),
        attempts.c.owner == sa.bindparam("b_owner"),
        attempts.c.state == "running",
    )


def attempt_fence(attempt: Any, owner: Any) -> Any:
    """The attempt is running, ``owner``'s, and its task is running, ``owner``'s, and pointing at
    it: what every write about a running attempt is fenced on (values or bound parameters)."""
    task_owned = sa.exists().where(
        tasks.c.id == attempts.c.task_id,
        tasks.c.current_attempt_id == attempts.c.id,
        tasks.c.state == RUNNING_STATE,
        tasks.c.owner == owner,
    )
    return sa.and_(attempts.c.id == attempt, attempts.c.owner == owner, attempts.c.state == "running", task_owned)


@functools.cache
def set_process() -> Any:
    """Record the worker process (``b_pid``, ``b_pgid``, ``b_ctime``) of running attempt
    ``b_attempt`` of ``b_owner``, fenced."""
    return (
        sa.update(attempts)
        .where(attempt_fence(sa.bindparam("b_attempt"), sa.bindparam("b_owner")))
        .values(pid=sa.bindparam("b_pid"), pgid=sa.bindparam("b_pgid"), create_time=sa.bindparam("b_ctime"))
    )
