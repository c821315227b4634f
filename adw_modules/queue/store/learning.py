"""Reads for routing that learns and for ``adw stats``: finished attempts with what became of
their task (its state, a later round, its pull request's fate), and recent durations per provider.

One query each, run at a coordinator's start, on its slow reload timer, and by ``adw stats``
(and the web console, through ``ops.stats``); never per decision.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from adw_modules.queue.store.base import StoreBase
from adw_modules.queue.store.schema import attempts, source_state, tasks

PR_FATE_KEY = "pr_fate"  # source state: "merged" | "closed" | "open" (sources.github.source)
RECENT_DURATIONS = 50
RECENT_SCAN = 2000  # finished attempts read (newest first) to find each provider's recent ones
# Ids the watermark stays below the newest: on PostgreSQL a lower id can commit after a higher
# one (two coordinators inserting at once), so the next incremental reload reads these again
# (LearningStats skips the ones counted already).
WATERMARK_MARGIN = 1000


@dataclass(frozen=True)
class AttemptFact:
    """One finished attempt and what became of its task."""

    task_id: int
    number: int
    provider: str
    model: str
    rule: str | None
    outcome: str | None
    error_kind: str | None
    cost_usd: float | None
    started_at: dt.datetime
    ended_at: dt.datetime | None
    failover_from: str | None
    labels: tuple[str, ...]
    repo: str | None
    task_state: str
    round_started_at: dt.datetime | None  # a round begun after this attempt: a follow-up was asked for
    pr_fate: str | None  # merged | closed | open | None (no pull request, or not a GitHub task)
    attempt_id: int | None = None

    @property
    def target(self) -> str:
        return f"{self.provider}:{self.model}"

    @property
    def duration_s(self) -> float | None:
        return None if self.ended_at is None else (self.ended_at - self.started_at).total_seconds()

    @property
    def followed_up(self) -> bool:
        """Was a new round (a follow-up) begun after this attempt ended?"""
        return self.round_started_at is not None and self.ended_at is not None and self.round_started_at > self.ended_at


class LearningMixin(StoreBase):
    def attempt_facts(self, since: dt.datetime, after_id: int | None = None) -> list[AttemptFact]:
        """Finished attempts started at or after ``since`` (and with an id above ``after_id``:
        an incremental reload), oldest first, with their task's fate."""
        query = (
            sa.select(
                attempts.c.id,
                attempts.c.task_id,
                attempts.c.number,
                attempts.c.provider,
                attempts.c.model,
                attempts.c.rule,
                attempts.c.outcome,
                attempts.c.error_kind,
                attempts.c.cost_usd,
                attempts.c.started_at,
                attempts.c.ended_at,
                attempts.c.failover_from,
                tasks.c.labels,
                tasks.c.repo,
                tasks.c.state.label("task_state"),
                tasks.c.round_started_at,
                source_state.c.data.label("source_data"),
            )
            .select_from(
                attempts.join(tasks, tasks.c.id == attempts.c.task_id).outerjoin(
                    source_state, source_state.c.task_id == attempts.c.task_id
                )
            )
            .where(attempts.c.started_at >= since, attempts.c.state != "running")
            .order_by(attempts.c.started_at, attempts.c.id)
        )
        if after_id is not None:
            query = query.where(attempts.c.id > after_id)
        with self._read() as conn:
            return [_fact(r) for r in conn.execute(query).mappings()]

    def learning_watermark(self) -> int:
        """An attempt id at or below which every attempt has ended: one below the oldest
        running attempt, else the newest id (0 for none), less ``WATERMARK_MARGIN``.  Read
        before the facts, every attempt at or below it is in them, so the next incremental
        reload reads only the ids above it (both ends of the (state, id) index)."""
        with self._read() as conn:
            running = conn.execute(
                sa.select(sa.func.min(attempts.c.id)).where(attempts.c.state == "running")
            ).scalar_one()
            if running is not None:
                return max(0, int(running) - 1 - WATERMARK_MARGIN)
            newest = conn.execute(sa.select(sa.func.max(attempts.c.id))).scalar_one()
            return max(0, int(newest or 0) - WATERMARK_MARGIN)

    def recent_durations(self, per_provider: int = RECENT_DURATIONS, scan: int = RECENT_SCAN) -> dict[str, list[float]]:
        """The durations in seconds of each provider's last ``per_provider`` finished attempts,
        oldest first, among the last ``scan`` finished attempts overall (newest ids first on the
        (state, id) index: a bounded read whatever the store's size)."""
        query = (
            sa.select(attempts.c.provider, attempts.c.started_at, attempts.c.ended_at)
            .where(attempts.c.state == "finished")
            .order_by(attempts.c.id.desc())
            .limit(scan)
        )
        out: dict[str, list[float]] = {}
        with self._read() as conn:
            for provider, started, ended in conn.execute(query):
                durations = out.setdefault(provider, [])
                if len(durations) < per_provider:
                    durations.append((ended - started).total_seconds())
        return {p: d[::-1] for p, d in out.items()}


def _fact(r: Any) -> AttemptFact:
    data = r["source_data"] or {}
    fate = data.get(PR_FATE_KEY) if isinstance(data, dict) else None
    return AttemptFact(
        task_id=int(r["task_id"]),
        number=int(r["number"]),
        provider=r["provider"],
        model=r["model"],
        rule=r["rule"],
        outcome=r["outcome"],
        error_kind=r["error_kind"],
        cost_usd=r["cost_usd"],
        started_at=r["started_at"],
        ended_at=r["ended_at"],
        failover_from=r["failover_from"],
        labels=tuple(str(x) for x in (r["labels"] or ())),
        repo=r["repo"],
        task_state=r["task_state"],
        round_started_at=r["round_started_at"],
        pr_fate=fate if fate in ("merged", "closed", "open") else None,
        attempt_id=int(r["id"]),
    )
