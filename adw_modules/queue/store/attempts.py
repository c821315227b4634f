"""An attempt's life: start, fencing, progress, leases, finish, reaping and orphan recovery."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.exc import IntegrityError

from adw_modules.outcomes import Usage
from adw_modules.queue.store import prepared
from adw_modules.queue.store.base import StoreBase
from adw_modules.queue.store.coordination import lock_provider_state
from adw_modules.queue.store.rows import (
    RUNNING_STATE,
    UNOWNED_VALUES,
    attempt_record,
    claimed_view,
    crashed_attempt_values,
    event_values,
    finished_attempt_values,
    lease_clock,
    lease_value,
    provider_state_values,
    task_record,
)
from adw_modules.queue.store.schema import attempts, provider_state, tasks
from adw_modules.queue.tasks import (
    Attempt,
    AttemptEnd,
    AttemptStart,
    ClaimDecision,
    Claimed,
    HealthChange,
    LeaveQueued,
    NewEvent,
    StartNow,
    Task,
    TaskState,
    Transition,
)

REAPED_MESSAGE = "lease lost: coordinator {owner} stopped heartbeating"


class _FencedOut(Exception):
    """Raised inside a transaction to roll it back when a later fenced statement misses."""


class AttemptsMixin(StoreBase):
    """Attempts of running tasks; every write about a running attempt is fenced on owner + attempt id."""

    # ------------------------------------------------------------------ attempts
    def claim_and_start(
        self,
        owner: str,
        lease_until: dt.datetime,
        now: dt.datetime,
        decide: Callable[[Task, int], ClaimDecision],
        *,
        task_id: int | None = None,
        exclude_ids: Collection[int] = (),
    ) -> Claimed | None:
        """Take the next claimable task (``task_id``: that one) and, as ``decide`` says, start its
        attempt in the same transaction; None if there is no such task for us now.

        ``decide(task, prior_attempts)`` sees the task as it will be once claimed (running under
        ``owner``, attempt_count + 1) and how many attempts it has had.  It must be quick and
        must not touch the store (the claim's lock is held).  It answers:

        * ``StartNow``: the task is claimed, its attempt row and the attempt.started event are
          written, all in this one transaction (the hot path: 4 statements);
        * None: the task is claimed without an attempt (``claim_task``'s result): the caller
          prepares it, then calls ``start_attempt`` or gives it back;
        * ``LeaveQueued``: nothing is claimed; the task's wait reason is stored, and a
          task.waiting event written, when it changed.  ``Claimed.waiting`` says which.

        If ``decide`` raises, nothing is written and the exception propagates.
        """
        query = prepared.pick(self._sqlite, bool(exclude_ids), task_id is not None)
        params: dict[str, Any] = {"b_now": now}
        if exclude_ids:
            params["b_exclude"] = list(exclude_ids)
        if task_id is not None:
            params["b_task"] = task_id
        try:
            with self._write() as conn:
                row = conn.execute(query, params).mappings().first()
                if row is None:
                    return None
                seen = task_record(row)
                claimed = claimed_view(seen, owner, lease_until, now)
                decision = decide(claimed, int(row["prior_attempts"]))
                if isinstance(decision, LeaveQueued):
                    return self._leave_queued(conn, seen, decision.reason, now)
                return self._claim(conn, seen, owner, lease_until, now, decision, int(row["prior_attempts"]))
        except IntegrityError:
            # ux_attempts_one_running_per_task: another attempt of this task is live (a bug
            # elsewhere); nothing was written.
            return None

    def _leave_queued(self, conn: Connection, task: Task, reason: str, now: dt.datetime) -> Claimed:
        if task.wait_reason == reason:
            return Claimed(task, waiting=reason)
        conn.execute(sa.update(tasks).where(tasks.c.id == task.id).values(wait_reason=reason, updated_at=now))
        write_event(conn, NewEvent("task.waiting", reason), now, task.id)
        return Claimed(dataclasses.replace(task, wait_reason=reason, updated_at=now), waiting=reason, announced=True)

    def _claim(
        self,
        conn: Connection,
        task: Task,
        owner: str,
        lease_until: dt.datetime,
        now: dt.datetime,
        decision: StartNow | None,
        prior_attempts: int,
    ) -> Claimed:
        params: dict[str, Any] = {"b_task": task.id, "b_owner": owner, "b_now": now}
        if self._sqlite:
            params["b_lease"] = lease_until
        else:
            params["b_lease_len"] = lease_until - now
        row = conn.execute(prepared.claim(self._sqlite, decision is not None), params).mappings().one()
        claimed = task_record(row)
        if decision is None:
            return Claimed(claimed)
        attempt = self._insert_attempt(conn, claimed, owner, decision.start, now, prior_attempts + 1)
        started = NewEvent("attempt.started", decision.event, provider=decision.start.provider)
        write_event(conn, started, now, claimed.id, attempt.id)
        return Claimed(claimed, attempt)

    def _insert_attempt(
        self, conn: Connection, task: Task, owner: str, start: AttemptStart, now: dt.datetime, number: int
    ) -> Attempt:
        values = {
            "id": task.current_attempt_id,
            "task_id": task.id,
            "number": number,
            "provider": start.provider,
            "model": start.model,
            "rule": start.rule,
            "routing": dict(start.routing),
            "config_fingerprint": start.config_fingerprint,
            "owner": owner,
            "host": start.host,
            "started_at": now,
            "state": "running",
            "input_tokens": 0,
            "output_tokens": 0,
            "cache_read_tokens": 0,
            "cache_write_tokens": 0,
            "failover_from": start.failover_from,
        }
        return attempt_record(conn.execute(prepared.INSERT_ATTEMPT, values).mappings().one())

    def start_attempt(
        self,
        task_id: int,
        owner: str,
        start: AttemptStart,
        now: dt.datetime,
        *,
        lease_until: dt.datetime | None = None,
        started_event: Callable[[int], str] | None = None,
    ) -> Attempt | None:
        """Record a running attempt of a task we claimed; None if fenced out or one already runs.

        Fenced on the task being running, owned by ``owner`` and without a current attempt.  The
        attempt number is the task's attempts so far + 1; the task's current_attempt_id points at
        it, and its lease runs to ``lease_until`` when given (preparing may have used part of the
        claim's).  ``started_event(number)`` is the attempt.started event's message, written in
        the same transaction.
        """
        values: dict[str, Any] = {"current_attempt_id": prepared.next_attempt_id(self._sqlite), "updated_at": now}
        if lease_until is not None:
            values["lease_expires_at"] = lease_value(self._sqlite, lease_until, now)
        # Not correlated: RETURNING names columns bare, so "id" would be the attempts' own.
        prior = sa.select(sa.func.count()).select_from(attempts).where(attempts.c.task_id == task_id).scalar_subquery()
        fenced = sa.update(tasks).where(
            tasks.c.id == task_id,
            tasks.c.owner == owner,
            tasks.c.state == RUNNING_STATE,
            tasks.c.current_attempt_id.is_(None),
        )
        try:
            with self._write() as conn:
                row = (
                    conn.execute(fenced.values(**values).returning(*tasks.c, prior.label("prior_attempts")))
                    .mappings()
                    .first()
                )
                if row is None:
                    return None
                attempt = self._insert_attempt(
                    conn, task_record(row), owner, start, now, int(row["prior_attempts"]) + 1
                )
                if started_event is not None:
                    started = NewEvent("attempt.started", started_event(attempt.number), provider=start.provider)
                    write_event(conn, started, now, task_id, attempt.id)
                return attempt
        except IntegrityError:
            # ux_attempts_one_running_per_task: another attempt of this task is live.
            return None

    def set_attempt_process(self, attempt_id: int, owner: str, pid: int, pgid: int, create_time: float) -> bool:
        """Record one worker's process identity (for orphan killing after a crash).  Fenced."""
        return attempt_id in self.record_processes(owner, {attempt_id: (pid, pgid, create_time)})

    def record_processes(self, owner: str, processes: Mapping[int, tuple[int, int, float]]) -> set[int]:
        """Record the worker processes ({attempt id: (pid, pgid, create time)}) of attempts a
        dispatch pass started, in one transaction; the attempt ids recorded (fenced, like every
        write about a running attempt)."""
        if not processes:
            return set()
        with self._write() as conn:
            return self._set_processes(conn, owner, processes)

    def _set_processes(self, conn: Connection, owner: str, processes: Mapping[int, tuple[int, int, float]]) -> set[int]:
        rows = [
            {"b_attempt": attempt_id, "b_owner": owner, "b_pid": pid, "b_pgid": pgid, "b_ctime": create_time}
            for attempt_id, (pid, pgid, create_time) in sorted(processes.items())
        ]
        if not rows:
            return set()
        # One executemany for the lot; it reports only a total, so when some attempt was fenced
        # out none counts as recorded (the next heartbeat writes them again, harmlessly).
        written = conn.execute(prepared.set_process(), rows).rowcount
        return set(processes) if written == len(rows) else set()

    def record_usage(self, owner: str, progress: Mapping[int, Usage]) -> None:
        """Store running attempts' tokens so far ({attempt id: usage}), fenced like every write
        about a running attempt; finish_attempt later overwrites them with the final counts."""
        if not progress:
            return
        with self._write() as conn:
            for attempt_id, usage in sorted(progress.items()):
                conn.execute(
                    sa.update(attempts)
                    .where(prepared.attempt_fence(attempt_id, owner))
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
        processes: Mapping[int, tuple[int, int, float]] | None = None,
    ) -> set[int]:
        """Extend the leases of (task_id, attempt_id) pairs we run; return the task ids we lost.

        ``processes`` ({attempt id: (pid, pgid, create time)}) records, in the same transaction,
        the worker processes of attempts started since the last heartbeat (fenced like every
        write about a running attempt), for orphan killing after a crash.

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
            self._set_processes(conn, owner, processes or {})
        return lost

    def finish_attempt(
        self,
        attempt_id: int,
        owner: str,
        end: AttemptEnd,
        transition: Transition,
        now: dt.datetime,
        *,
        events_after: Sequence[NewEvent] = (),
        health: HealthChange | None = None,
        process: tuple[int, int, float] | None = None,
        announce: bool = False,
    ) -> bool:
        """End our running attempt and move its task on, in one transaction.

        Fenced: the attempt must be running under ``owner`` and be the current attempt of
        a task that is running under ``owner``.  The task takes transition.state and its
        fields (retry_count / excluded_targets only when not None); owner, lease and
        current_attempt_id are cleared.  False, with nothing written, if fenced out.

        In the same transaction: ``events_after`` are written, ``health`` updates its provider's
        state (read locked, changed, written; ``health.recorded`` is told the states before and
        after and may add an event), and ``process`` (pid, pgid, create time) is kept on the
        attempt if no heartbeat recorded it yet.  A task requeued at once (a failover), or
        ``announce`` (the end frees capacity others wait for), wakes the listening coordinators.
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
        fence = {"b_attempt": attempt_id, "b_owner": owner}
        try:
            with self._write() as conn:
                # Task row first (the global lock order), fenced on ownership of this attempt.
                task_id = conn.execute(prepared.end_task(), {**fence, **task_values}).scalar_one_or_none()
                if task_id is None:
                    raise _FencedOut
                values = finished_attempt_values(end, now)
                if process is not None:
                    values.update(pid=process[0], pgid=process[1], create_time=process[2])
                ended = conn.execute(prepared.end_attempt(), {**fence, **values}).rowcount
                if ended != 1:
                    raise _FencedOut
                extra = [] if health is None else self._change_health(conn, health, now)
                rows = [{**event_values(e, now), "task_id": task_id, "attempt_id": attempt_id} for e in events_after]
                rows += [{**event_values(e, now), "task_id": None, "attempt_id": None} for e in extra]
                if rows:
                    conn.execute(prepared.INSERT_EVENT, rows)
                if announce or target is TaskState.QUEUED:
                    self._announce(conn)
        except _FencedOut:
            return False
        return True

    def _change_health(self, conn: Connection, change: HealthChange, now: dt.datetime) -> list[NewEvent]:
        """Read-modify-write the provider's state under its row lock; the events it adds."""
        before = lock_provider_state(conn, self._insert(provider_state), change.provider, now)
        after = change.apply(before)
        if after.provider != change.provider:
            raise ValueError(f"health change for {change.provider!r} returned provider {after.provider!r}")
        conn.execute(
            sa.update(provider_state)
            .where(provider_state.c.provider == change.provider)
            .values(**provider_state_values(after, now))
        )
        stored = dataclasses.replace(after, updated_at=after.updated_at or now)
        event = change.recorded(before, stored)
        return [] if event is None else [event]

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
            if any(t.state is TaskState.QUEUED for t, _ in out):
                self._announce(conn)
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


def write_event(
    conn: Connection, event: NewEvent, now: dt.datetime, task_id: int, attempt_id: int | None = None
) -> None:
    """One event row, in the caller's transaction."""
    conn.execute(prepared.INSERT_EVENT, {**event_values(event, now), "task_id": task_id, "attempt_id": attempt_id})
