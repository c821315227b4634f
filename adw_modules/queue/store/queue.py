"""The task queue: creating and finding tasks, claiming and releasing them, operator actions."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from typing import Any

import sqlalchemy as sa

from adw_modules.queue.store.base import StoreBase, utcnow
from adw_modules.queue.store.rows import RUNNING_STATE, UNOWNED_VALUES, claim_values, lease_value, task_record
from adw_modules.queue.store.schema import attempts, retired_sources, tasks
from adw_modules.queue.store.text import as_read_back
from adw_modules.queue.tasks import PRIORITY_RANK, NewTask, Task, TaskState

_CLAIMABLE = (TaskState.QUEUED.value, TaskState.RETRY_WAIT.value)
_REQUEUEABLE = (
    TaskState.QUEUED.value,
    TaskState.RETRY_WAIT.value,
    TaskState.SUCCEEDED.value,
    TaskState.FAILED.value,
    TaskState.CANCELLED.value,
)


def claimable_now(t: sa.Table | Any, now: dt.datetime | sa.BindParameter[Any], *, sqlite: bool = False) -> Any:
    """Claimable: queued, or retry_wait whose not_before has come (NULL counts as come).

    On SQLite the literal ``state IN ('queued', 'retry_wait')`` is added: it is the partial claim
    index's own predicate, and SQLite uses a partial index only for a query that repeats it with
    literals; then (given statistics, ``optimize``) it walks the index in claim order instead of
    sorting the whole backlog.  PostgreSQL matches the index without it (and plans worse with it)."""
    due = sa.or_(
        t.c.state == TaskState.QUEUED.value,
        sa.and_(t.c.state == TaskState.RETRY_WAIT.value, sa.or_(t.c.not_before.is_(None), t.c.not_before <= now)),
    )
    if not sqlite:
        return due
    literal = t.c.state.in_([sa.literal_column(f"'{s.value}'") for s in (TaskState.QUEUED, TaskState.RETRY_WAIT)])
    return sa.and_(literal, due)


def claim_order(t: sa.Table | Any) -> tuple[Any, ...]:
    """The order tasks are claimed in: priority (critical first), then oldest, then id."""
    return (t.c.priority_rank, t.c.created_at, t.c.id)


class TaskQueueMixin(StoreBase):
    """Tasks in and out of the queue: upsert, lookups, claim, release, cancel, requeue."""

    # ------------------------------------------------------------------ tasks
    def upsert_task(self, new: NewTask) -> tuple[Task, bool]:
        """Create the task for (source, external_id), or refresh its description.

        Returns (task, created).  An existing task gets title/body/labels/priority/repo/url
        updated (updated_at only moves when something changed); its state is untouched.
        Safe when several coordinators ingest the same issue at once: exactly one creates it.
        Raises ValueError for a priority not in PRIORITY_RANK.
        """
        if new.priority not in PRIORITY_RANK:
            raise ValueError(f"unknown priority {new.priority!r} (known: {', '.join(PRIORITY_RANK)})")
        now = utcnow()
        described = {
            "title": new.title,
            "body": new.body,
            "labels": list(new.labels),
            "priority": new.priority,
            "priority_rank": PRIORITY_RANK[new.priority],
            "repo": new.repo,
            "url": new.url,
        }
        key = (tasks.c.source == new.source) & (tasks.c.external_id == new.external_id)
        with self._write() as conn:
            ins = (
                self._insert(tasks)
                .values(
                    source=new.source,
                    external_id=new.external_id,
                    state=TaskState.QUEUED.value,
                    retry_count=0,
                    attempt_count=0,
                    excluded_targets=[],
                    cancel_requested=False,
                    created_at=now,
                    updated_at=now,
                    **described,
                )
                .on_conflict_do_nothing(index_elements=["source", "external_id"])
                .returning(*tasks.c)
            )
            created = conn.execute(ins).mappings().first()
            if created is not None:
                self._announce(conn)
                retired = (retired_sources.c.source == new.source) & (retired_sources.c.external_id == new.external_id)
                conn.execute(sa.delete(retired_sources).where(retired))
                return task_record(created), True
            row = conn.execute(sa.select(tasks).where(key).with_for_update()).mappings().one()
            # Compared as they read back (store/text.py), else unstorable text would look changed each poll.
            if all(row[k] == (as_read_back(str(v)) if k in ("title", "body") else v) for k, v in described.items()):
                return task_record(row), False
            updated = (
                conn.execute(sa.update(tasks).where(key).values(updated_at=now, **described).returning(*tasks.c))
                .mappings()
                .one()
            )
            return task_record(updated), False

    def get_task(self, task_id: int) -> Task | None:
        with self._read() as conn:
            row = conn.execute(sa.select(tasks).where(tasks.c.id == task_id)).mappings().first()
        return None if row is None else task_record(row)

    def find_task(self, source: str, external_id: str) -> Task | None:
        with self._read() as conn:
            row = (
                conn.execute(sa.select(tasks).where(tasks.c.source == source, tasks.c.external_id == external_id))
                .mappings()
                .first()
            )
        return None if row is None else task_record(row)

    def list_tasks(self, state: TaskState | None = None, limit: int = 200) -> list[Task]:
        """Newest first."""
        query = sa.select(tasks).order_by(tasks.c.created_at.desc(), tasks.c.id.desc()).limit(limit)
        if state is not None:
            query = query.where(tasks.c.state == TaskState(state).value)
        with self._read() as conn:
            return [task_record(r) for r in conn.execute(query).mappings()]

    def tasks_by_source(
        self, source: str, states: Collection[TaskState] | None = None, updated_since: dt.datetime | None = None
    ) -> list[Task]:
        """A source's tasks, optionally only in ``states`` or changed since ``updated_since`` (oldest change first)."""
        q = sa.select(tasks).where(tasks.c.source == source)
        if states is not None:
            q = q.where(tasks.c.state.in_([str(s) for s in states]))
        if updated_since is not None:
            q = q.where(tasks.c.updated_at >= updated_since)
        with self._read() as conn:
            return [task_record(r) for r in conn.execute(q.order_by(tasks.c.updated_at, tasks.c.id)).mappings()]

    # ------------------------------------------------------------------ claiming
    def claim_task(
        self,
        owner: str,
        lease_until: dt.datetime,
        now: dt.datetime,
        exclude_ids: Collection[int] = (),
        task_id: int | None = None,
    ) -> Task | None:
        """Atomically take one claimable task (``task_id``: that one), or None if there is none for us now.

        Claimable: queued, or retry_wait with not_before <= now (a NULL not_before is
        claimable too).  Order: priority (critical first), then created_at, then id.
        The task becomes running under ``owner`` with the lease, attempt_count + 1 and
        wait_reason cleared; cancel_requested is left as it is.  Each task goes to
        exactly one claimer however many race.
        """

        # An alias, so the inner SELECT is not correlated away into the outer UPDATE.
        cand_t = tasks.alias("cand_t")
        pick = sa.select(cand_t.c.id).where(claimable_now(cand_t, now, sqlite=self._sqlite))
        if exclude_ids:
            pick = pick.where(cand_t.c.id.not_in(list(exclude_ids)))
        if task_id is not None:
            pick = pick.where(cand_t.c.id == task_id)
        pick = pick.order_by(*claim_order(cand_t)).limit(1)
        values = claim_values(owner, lease_value(self._sqlite, lease_until, now), now)
        if self._sqlite:
            # Compare-and-set under the write lock: the re-check of the predicate in the
            # outer WHERE makes it correct even without the lock.
            stmt = sa.update(tasks).where(
                tasks.c.id == pick.scalar_subquery(), claimable_now(tasks, now, sqlite=self._sqlite)
            )
        else:
            # The CTE is an optimisation fence (Oban): the planner cannot turn the
            # LIMIT 1 into a nested loop that locks and updates more rows.
            cand = pick.with_for_update(skip_locked=True).cte("cand")
            stmt = sa.update(tasks).where(tasks.c.id == cand.c.id, claimable_now(tasks, now, sqlite=self._sqlite))
        with self._write() as conn:
            row = conn.execute(stmt.values(**values).returning(*tasks.c)).mappings().first()
        return None if row is None else task_record(row)

    def claimable_tasks(self, now: dt.datetime, limit: int, exclude_ids: Collection[int] = ()) -> list[Task]:
        """The next ``limit`` tasks ``claim_task`` would take, in its order, without taking any
        (so a dispatch pass can leave alone the tasks whose provider is busy)."""
        query = sa.select(tasks).where(claimable_now(tasks, now, sqlite=self._sqlite))
        if exclude_ids:
            query = query.where(tasks.c.id.not_in(list(exclude_ids)))
        query = query.order_by(*claim_order(tasks)).limit(limit)
        with self._read() as conn:
            return [task_record(r) for r in conn.execute(query).mappings()]

    def note_waiting(self, task_id: int, reason: str, now: dt.datetime) -> bool:
        """Say why an unclaimed (queued / retry_wait) task waits; True only when the reason
        changed, so the caller announces each reason once, not once per dispatch pass."""
        stmt = (
            sa.update(tasks)
            .where(
                tasks.c.id == task_id,
                tasks.c.state.in_(_CLAIMABLE),
                sa.or_(tasks.c.wait_reason.is_(None), tasks.c.wait_reason != reason),
            )
            .values(wait_reason=reason, updated_at=now)
        )
        with self._write() as conn:
            return conn.execute(stmt).rowcount == 1

    def wake_waiting(self, reason_prefix: str, now: dt.datetime) -> list[int]:
        """Make claimable now the retry_wait tasks whose ``wait_reason`` starts with
        ``reason_prefix`` and whose ``not_before`` is still ahead (a reload fixed what they
        waited for, e.g. a credential); their ids, in id order.  The coordinators are woken."""
        stmt = (
            sa.update(tasks)
            .where(
                tasks.c.state == TaskState.RETRY_WAIT.value,
                tasks.c.not_before > now,
                tasks.c.wait_reason.startswith(reason_prefix, autoescape=True),
            )
            .values(not_before=now, updated_at=now)
            .returning(tasks.c.id)
        )
        with self._write() as conn:
            woken = sorted(r[0] for r in conn.execute(stmt))
            if woken:
                self._announce(conn)
        return woken

    def release_task(
        self,
        task_id: int,
        owner: str,
        state: TaskState,
        not_before: dt.datetime | None,
        wait_reason: str | None,
        counted: bool = False,
    ) -> bool:
        """Give back a claimed task that never started an attempt (e.g. no usable target).

        Fenced on owner, state running and no running attempt.  The task takes ``state``
        (anything but running), ``not_before`` and ``wait_reason`` (for a task released as
        failed, the reason is its ``last_error``); owner and lease are cleared and
        attempt_count goes back down (nothing ran) unless ``counted`` (starting it failed: that
        counts toward max_total_attempts, so a start that always fails ends).  False if fenced out.
        """
        state = TaskState(state)
        if state is TaskState.RUNNING:
            raise ValueError("release_task: a released task cannot stay running")
        why: dict[str, Any] = {"wait_reason": wait_reason}
        if state is TaskState.FAILED:
            why = {"wait_reason": None, "last_error": wait_reason}
        running_attempt = sa.exists().where(attempts.c.task_id == tasks.c.id, attempts.c.state == "running")
        stmt = (
            sa.update(tasks)
            .where(
                tasks.c.id == task_id,
                tasks.c.owner == owner,
                tasks.c.state == RUNNING_STATE,
                tasks.c.current_attempt_id.is_(None),
                ~running_attempt,
            )
            .values(
                state=state.value,
                not_before=not_before,
                attempt_count=tasks.c.attempt_count - (0 if counted else 1),
                **why,
                updated_at=utcnow(),
                **UNOWNED_VALUES,
            )
        )
        with self._write() as conn:
            return conn.execute(stmt).rowcount == 1

    # ------------------------------------------------------------------ operator actions
    def request_cancel(self, task_id: int, now: dt.datetime, reason: str = "adw cancel") -> TaskState | None:
        """Cancel a task: at once if waiting, via its owner if running.  ``reason`` says who or
        what asked ("issue closed", "adw cancel"); it is kept as ``cancel_reason`` (and, for a
        task cancelled at once, as its last error), so every view can say why.

        queued / retry_wait -> cancelled (returns CANCELLED); running -> cancel_requested
        set (returns RUNNING: the owner kills its worker and finishes with a cancelled
        transition); terminal -> unchanged (returns its state); None if no such task.
        """
        with self._write() as conn:
            state = conn.execute(
                sa.select(tasks.c.state).where(tasks.c.id == task_id).with_for_update()
            ).scalar_one_or_none()
            if state is None:
                return None
            if state in _CLAIMABLE:
                conn.execute(
                    sa.update(tasks)
                    .where(tasks.c.id == task_id, tasks.c.state.in_(_CLAIMABLE))
                    .values(
                        state=TaskState.CANCELLED.value,
                        not_before=None,
                        wait_reason=None,
                        updated_at=now,
                        cancel_reason=reason,
                        last_error=f"cancelled: {reason}",
                        last_error_kind="cancelled",
                    )
                )
                return TaskState.CANCELLED
            if state == RUNNING_STATE:
                conn.execute(
                    sa.update(tasks)
                    .where(tasks.c.id == task_id, tasks.c.state == RUNNING_STATE)
                    .values(cancel_requested=True, cancel_reason=reason, updated_at=now)
                )
                return TaskState.RUNNING
            return TaskState(state)

    def requeue_task(self, task_id: int, now: dt.datetime, reset_retries: bool = False) -> bool:
        """``adw retry``: put a non-running task back in the queue, claimable at once.

        Clears cancel_requested, excluded_targets, not_before and wait_reason; with
        ``reset_retries`` also retry_count and attempt_count (a fresh round: the router sees a
        first try, and max_attempts/max_total_attempts count from here).  False if the task is
        running or missing.
        """
        values: dict[str, Any] = {
            "state": TaskState.QUEUED.value,
            "cancel_requested": False,
            "excluded_targets": [],
            "not_before": None,
            "wait_reason": None,
            "updated_at": now,
        }
        if reset_retries:
            values["retry_count"] = 0
            values["attempt_count"] = 0
            values["round_started_at"] = now
        stmt = sa.update(tasks).where(tasks.c.id == task_id, tasks.c.state.in_(_REQUEUEABLE)).values(**values)
        with self._write() as conn:
            if conn.execute(stmt).rowcount != 1:
                return False
            self._announce(conn)
            return True

    def work_due(self, horizon: dt.datetime) -> bool:
        """Is a task queued or running, or a retry due by ``horizon``?  (One indexed probe: the
        idle check of ``adw run --until-idle``, not a count.)"""
        due = sa.or_(tasks.c.state == RUNNING_STATE, claimable_now(tasks, horizon, sqlite=self._sqlite))
        with self._read() as conn:
            return conn.execute(sa.select(tasks.c.id).where(due).limit(1)).first() is not None

    def cancel_requested(self, owner: str) -> list[int]:
        """Ids of running tasks owned by ``owner`` whose cancellation was requested."""
        query = (
            sa.select(tasks.c.id)
            .where(tasks.c.owner == owner, tasks.c.state == RUNNING_STATE, tasks.c.cancel_requested.is_(True))
            .order_by(tasks.c.id)
        )
        with self._read() as conn:
            return list(conn.execute(query).scalars())
