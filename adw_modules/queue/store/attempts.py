"""An attempt's life: start, fencing, progress, leases, finish, reaping and orphan recovery."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.exc import IntegrityError

from adw_modules.outcomes import Usage
from adw_modules.queue.store.base import StoreBase
from adw_modules.queue.store.rows import (
    RUNNING_STATE,
    UNOWNED_VALUES,
    attempt_record,
    crashed_attempt_values,
    finished_attempt_values,
    lease_clock,
    lease_value,
    task_record,
)
from adw_modules.queue.store.schema import attempts, provider_state, tasks
from adw_modules.queue.tasks import Attempt, AttemptEnd, AttemptStart, Task, TaskState, Transition

REAPED_MESSAGE = "lease lost: coordinator {owner} stopped heartbeating"


class _FencedOut(Exception):
    """Raised inside a transaction to roll it back when a later fenced statement misses."""


class AttemptsMixin(StoreBase):
    """Attempts of running tasks; every write about a running attempt is fenced on owner + attempt id."""

    # ------------------------------------------------------------------ attempts
    def start_attempt(self, task_id: int, owner: str, start: AttemptStart, now: dt.datetime) -> Attempt | None:
        """Record a running attempt of a task we own; None if fenced out or one already runs.

        Fenced on the task being running and owned by ``owner``.  The attempt number is
        the task's attempt count so far + 1; the task's current_attempt_id points at it.
        """
        try:
            with self._write() as conn:
                owned = conn.execute(
                    sa.select(tasks.c.id)
                    .where(tasks.c.id == task_id, tasks.c.owner == owner, tasks.c.state == RUNNING_STATE)
                    .with_for_update()
                ).first()
                if owned is None:
                    return None
                # The task row is locked (PG) / the write lock held (SQLite): the count is stable.
                number = conn.execute(
                    sa.select(sa.func.count()).select_from(attempts).where(attempts.c.task_id == task_id)
                ).scalar_one()
                row = (
                    conn.execute(
                        sa.insert(attempts)
                        .values(
                            task_id=task_id,
                            number=number + 1,
                            provider=start.provider,
                            model=start.model,
                            rule=start.rule,
                            routing=dict(start.routing),
                            config_fingerprint=start.config_fingerprint,
                            owner=owner,
                            host=start.host,
                            started_at=now,
                            state="running",
                            input_tokens=0,
                            output_tokens=0,
                            cache_read_tokens=0,
                            cache_write_tokens=0,
                            failover_from=start.failover_from,
                        )
                        .returning(*attempts.c)
                    )
                    .mappings()
                    .one()
                )
                conn.execute(
                    sa.update(tasks)
                    .where(tasks.c.id == task_id, tasks.c.owner == owner, tasks.c.state == RUNNING_STATE)
                    .values(current_attempt_id=row["id"], updated_at=now)
                )
                return attempt_record(row)
        except IntegrityError:
            # ux_attempts_one_running_per_task: another attempt of this task is live.
            return None

    def _attempt_fence(self, attempt_id: int, owner: str) -> Any:
        """The attempt is running, ours, and its task is running, ours, and pointing at it."""
        task_owned = sa.exists().where(
            tasks.c.id == attempts.c.task_id,
            tasks.c.current_attempt_id == attempts.c.id,
            tasks.c.state == RUNNING_STATE,
            tasks.c.owner == owner,
        )
        return sa.and_(
            attempts.c.id == attempt_id, attempts.c.owner == owner, attempts.c.state == "running", task_owned
        )

    def set_attempt_process(self, attempt_id: int, owner: str, pid: int, pgid: int, create_time: float) -> bool:
        """Record the worker's process identity (for orphan killing after a crash).  Fenced."""
        stmt = (
            sa.update(attempts)
            .where(self._attempt_fence(attempt_id, owner))
            .values(pid=pid, pgid=pgid, create_time=create_time)
        )
        with self._write() as conn:
            return conn.execute(stmt).rowcount == 1

    def record_usage(self, owner: str, progress: Mapping[int, Usage]) -> None:
        """Store running attempts' tokens so far ({attempt id: usage}), fenced like every write
        about a running attempt; finish_attempt later overwrites them with the final counts."""
        if not progress:
            return
        with self._write() as conn:
            for attempt_id, usage in sorted(progress.items()):
                conn.execute(
                    sa.update(attempts)
                    .where(self._attempt_fence(attempt_id, owner))
                    .values(
                        input_tokens=usage.input_tokens,
                        output_tokens=usage.output_tokens,
                        cache_read_tokens=usage.cache_read_tokens,
                        cache_write_tokens=usage.cache_write_tokens,
                    )
                )

    def renew_leases(
        self,
        owner: str,
        held: Collection[tuple[int, int | None]],
        lease_until: dt.datetime,
        now: dt.datetime | None = None,
    ) -> set[int]:
        """Extend the leases of (task_id, attempt_id) pairs we run; return the task ids we lost.

        Each renewal is fenced on owner, state running and current_attempt_id (an
        attempt_id of None matches a claimed task with no attempt yet).  A lease that
        has expired but was not reaped yet is renewed: the reaper fences on the expired
        value, so exactly one of the two wins.  Given the caller's ``now``, a lease on
        PostgreSQL is as long as ``lease_until - now`` from the database's clock.
        """
        lost: set[int] = set()
        if not held:
            return lost
        with self._write() as conn:
            # In task id order, like every multi-row lock taker here: no lock-order cycles.
            for task_id, attempt_id in sorted(set(held), key=lambda pair: pair[0]):
                current = (
                    tasks.c.current_attempt_id.is_(None)
                    if attempt_id is None
                    else tasks.c.current_attempt_id == attempt_id
                )
                stmt = (
                    sa.update(tasks)
                    .where(tasks.c.id == task_id, tasks.c.owner == owner, tasks.c.state == RUNNING_STATE, current)
                    .values(
                        lease_expires_at=lease_value(self._sqlite, lease_until, now)
                    )  # updated_at tracks changes, not heartbeats
                )
                if conn.execute(stmt).rowcount != 1:
                    lost.add(task_id)
        return lost

    def finish_attempt(
        self,
        attempt_id: int,
        owner: str,
        end: AttemptEnd,
        transition: Transition,
        now: dt.datetime,
    ) -> bool:
        """End our running attempt and move its task on, in one transaction.

        Fenced: the attempt must be running under ``owner`` and be the current attempt of
        a task that is running under ``owner``.  The task takes transition.state and its
        fields (retry_count / excluded_targets only when not None); owner, lease and
        current_attempt_id are cleared.  False, with nothing written, if fenced out.
        """
        target = TaskState(transition.state)
        if target is TaskState.RUNNING:
            raise ValueError("finish_attempt: the transition must leave the running state")
        task_values: dict[str, Any] = {
            "state": target.value,
            "not_before": transition.not_before,
            "wait_reason": transition.wait_reason,
            "last_error": transition.last_error,
            "last_error_kind": transition.last_error_kind,
            "updated_at": now,
            **UNOWNED_VALUES,
        }
        if transition.retry_count is not None:
            task_values["retry_count"] = transition.retry_count
        if transition.excluded_targets is not None:
            task_values["excluded_targets"] = list(transition.excluded_targets)
        of_attempt = sa.select(attempts.c.task_id).where(attempts.c.id == attempt_id).scalar_subquery()
        try:
            with self._write() as conn:
                # Task row first (the global lock order), fenced on ownership of this attempt.
                moved = conn.execute(
                    sa.update(tasks)
                    .where(
                        tasks.c.id == of_attempt,
                        tasks.c.owner == owner,
                        tasks.c.state == RUNNING_STATE,
                        tasks.c.current_attempt_id == attempt_id,
                    )
                    .values(**task_values)
                ).rowcount
                if moved != 1:
                    raise _FencedOut
                ended = conn.execute(
                    sa.update(attempts)
                    .where(attempts.c.id == attempt_id, attempts.c.owner == owner, attempts.c.state == "running")
                    .values(**finished_attempt_values(end, now))
                ).rowcount
                if ended != 1:
                    raise _FencedOut
        except _FencedOut:
            return False
        return True

    def _requeue_crashed(
        self,
        conn: Connection,
        task: RowMapping,
        message: str,
        now: dt.datetime,
        max_total_attempts: int | None = None,
        not_before: dt.datetime | None = None,
    ) -> tuple[Task, Attempt | None]:
        """Finish the task's running attempt as crashed and put the task back in the queue, or
        fail it when that was its ``max_total_attempts``-th attempt.

        ``message`` is "<what happened>: <detail>" (e.g. "lease lost: coordinator X stopped
        heartbeating"); a task that fails here says how often that happened ("lease lost 3
        times: …").  A claim that never started an attempt counts too: whatever ended it (a
        crash while preparing) may happen again.  The caller holds the task row (PG lock /
        SQLite write lock) and has checked it is still running under the owner and lease it read.
        """
        attempt_row = (
            conn.execute(
                sa.update(attempts)
                .where(attempts.c.task_id == task["id"], attempts.c.state == "running")
                .values(**crashed_attempt_values(message, now))
                .returning(*attempts.c)
            )
            .mappings()
            .first()
        )
        values: dict[str, Any] = {
            "state": TaskState.QUEUED.value if not_before is None else TaskState.RETRY_WAIT.value,
            "not_before": not_before,
            "wait_reason": None if not_before is None else message,
            "last_error": message,
            "last_error_kind": "crashed",
            "updated_at": now,
            **UNOWNED_VALUES,
        }
        if max_total_attempts is not None and task["attempt_count"] >= max_total_attempts:
            what, _, detail = message.partition(": ")
            same = self._crashes_like(conn, task, what)
            values.update(
                state=TaskState.FAILED.value,
                not_before=None,
                wait_reason=None,
                last_error=gave_up_reason(what, detail, same, task["attempt_count"]),
            )
        row = (
            conn.execute(
                sa.update(tasks)
                .where(
                    tasks.c.id == task["id"],
                    tasks.c.state == RUNNING_STATE,
                    tasks.c.owner == task["owner"],
                    tasks.c.lease_expires_at == task["lease_expires_at"],
                )
                .values(**values)
                .returning(*tasks.c)
            )
            .mappings()
            .one()
        )
        return task_record(row), None if attempt_row is None else attempt_record(attempt_row)

    def _crashes_like(self, conn: Connection, task: RowMapping, what: str) -> int:
        """How many of the task's attempts this round the store ended as "<what>: …"."""
        query = (
            sa.select(sa.func.count())
            .select_from(attempts)
            .where(
                attempts.c.task_id == task["id"],
                attempts.c.outcome == "crashed",
                sa.func.substr(attempts.c.error_message, 1, len(what) + 2) == f"{what}: ",
            )
        )
        if task["round_started_at"] is not None:
            query = query.where(attempts.c.started_at >= task["round_started_at"])
        return int(conn.execute(query).scalar_one())

    def _clear_dead_trials(self, conn: Connection) -> None:
        """A half-open trial slot lives as long as its task runs under a lease: free every slot
        whose task does not (its coordinator died mid-trial, or never finished it)."""
        live = sa.exists().where(tasks.c.id == provider_state.c.probe_attempt_id, tasks.c.state == RUNNING_STATE)
        conn.execute(
            sa.update(provider_state)
            .where(provider_state.c.probe_attempt_id.is_not(None), ~live)
            .values(probe_attempt_id=None)
        )

    def reap_expired(
        self, now: dt.datetime, max_total_attempts: int | None = None
    ) -> list[tuple[Task, Attempt | None]]:
        """Requeue every running task whose lease expired before now (the database's clock on
        PostgreSQL, ``now`` on SQLite), and free trial slots no running task holds.

        Its running attempt (if any) ends as crashed ("lease lost: coordinator <owner>
        stopped heartbeating"); the task goes back to queued with owner cleared and
        retry_count unchanged (at-least-once: the attempt stays counted in attempt_count),
        or fails when that was its ``max_total_attempts``-th attempt ("lease lost N times").
        Several reapers at once reap each task once.  Returns what was reaped, so the
        caller can kill a local orphan by its pid/create_time.
        """
        pick = sa.select(tasks).where(
            tasks.c.state == RUNNING_STATE, tasks.c.lease_expires_at < lease_clock(self._sqlite, now)
        )
        if not self._sqlite:
            # Rows another reaper (or a finishing owner) holds are theirs to settle.
            pick = pick.with_for_update(skip_locked=True)
        out: list[tuple[Task, Attempt | None]] = []
        with self._write() as conn:
            expired = list(conn.execute(pick.order_by(tasks.c.id)).mappings())
            for task in expired:
                message = REAPED_MESSAGE.format(owner=task["owner"])
                out.append(self._requeue_crashed(conn, task, message, now, max_total_attempts))
            self._clear_dead_trials(conn)
        return out

    def abandon_attempt(
        self,
        attempt_id: int,
        expected_owner: str,
        now: dt.datetime,
        message: str,
        max_total_attempts: int | None = None,
        not_before: dt.datetime | None = None,
    ) -> bool:
        """End a running attempt as crashed and requeue its task (an orphan of a previous
        incarnation, or our own attempt whose result could not be recorded).

        ``message`` is "<what happened>: <detail>"; past ``max_total_attempts`` the task fails
        saying how often that happened.  With ``not_before`` the task waits in retry_wait
        until then.  Fenced on the attempt still running under ``expected_owner`` (and its
        task still running under that owner); False if someone already settled it.
        """
        with self._write() as conn:
            task = (
                conn.execute(
                    sa.select(tasks)
                    .where(
                        tasks.c.id
                        == sa.select(attempts.c.task_id).where(attempts.c.id == attempt_id).scalar_subquery(),
                        tasks.c.state == RUNNING_STATE,
                        tasks.c.owner == expected_owner,
                        tasks.c.current_attempt_id == attempt_id,
                    )
                    .with_for_update()
                )
                .mappings()
                .first()
            )
            if task is None:
                return False
            live = conn.execute(
                sa.select(attempts.c.id).where(
                    attempts.c.id == attempt_id,
                    attempts.c.owner == expected_owner,
                    attempts.c.state == "running",
                )
            ).first()
            if live is None:
                return False
            self._requeue_crashed(conn, task, message, now, max_total_attempts, not_before)
            self._clear_dead_trials(conn)
        return True

    def running_attempts(self, host: str | None = None, owner: str | None = None) -> list[Attempt]:
        query = sa.select(attempts).where(attempts.c.state == "running").order_by(attempts.c.id)
        if host is not None:
            query = query.where(attempts.c.host == host)
        if owner is not None:
            query = query.where(attempts.c.owner == owner)
        with self._read() as conn:
            return [attempt_record(r) for r in conn.execute(query).mappings()]

    def attempts_for(self, task_id: int) -> list[Attempt]:
        """Oldest first."""
        query = sa.select(attempts).where(attempts.c.task_id == task_id).order_by(attempts.c.number)
        with self._read() as conn:
            return [attempt_record(r) for r in conn.execute(query).mappings()]


def gave_up_reason(what: str, detail: str, same: int, attempts_in_all: int) -> str:
    """Why a task failed at its attempt limit: "lease lost 3 times: <detail>"."""
    times = f"{same} time" + ("" if same == 1 else "s")
    if same >= attempts_in_all:
        return f"{what} {times}: {detail}"
    return f"gave up after {attempts_in_all} attempts ({what} {times}); last: {detail}"
