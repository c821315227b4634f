"""The durable store behind the coordinator: every SQL statement the service runs lives in this package.

Owns: the tables (``schema``) and every query on them, one mixin per concern (Layout, below).
May import: ``queue.tasks`` (the records it returns), ``outcomes``; SQLAlchemy, Alembic.  Nothing else.

Backends: SQLite in WAL mode (the embedded default, one host) and PostgreSQL (several
coordinators on several hosts).  Both run the same contract (tests/queue/store/).

Guarantees callers rely on:

* Each public method is one short transaction: it commits entirely or not at all.
* Claiming is atomic: on PostgreSQL a ``FOR UPDATE SKIP LOCKED`` CTE feeds an
  ``UPDATE … RETURNING``; on SQLite (where SQLAlchemy silently drops ``FOR UPDATE``)
  write transactions start with ``BEGIN IMMEDIATE``, so the single-statement
  compare-and-set ``UPDATE … WHERE id = (SELECT … LIMIT 1) AND state IN (…)`` runs
  under SQLite's one writer lock.
* Every write about a running attempt is fenced on owner + attempt id.  A fenced-out
  write changes nothing and the method returns False / None (never raises for that):
  the caller has lost the lease and must stop its worker and drop the result.
* "Never two live attempts of one task" is a partial unique index, so it holds even
  against a buggy caller.
* All datetimes are timezone-aware UTC in and out; naive ones are refused (ValueError
  wrapped in sqlalchemy.exc.StatementError).
* No text makes a write fail: NUL and lone surrogates are replaced in every text and JSON
  column, while a task's title and body keep NUL through a reversible escape (``text``).
* Leases on PostgreSQL are counted and compared with the database's clock (``now()``), so a
  host with a skewed clock can neither reap early nor hold a lease too long; on SQLite (one
  host) with the caller's ``now``.
* Ending a crashed attempt (reaper, orphan recovery, a result that could not be recorded)
  counts toward ``max_total_attempts`` when the caller passes it; past it the task fails
  saying what happened how often.  The reaper also frees half-open trial slots whose task no
  longer runs.

Lock order on PostgreSQL is always tasks row first, then attempts rows, so a finishing
owner and a reaper cannot deadlock.

Layout: ``Store`` (below) is assembled from one mixin per concern, each over ``StoreBase``:

* ``engine``: engine creation, SQLite WAL / busy timeout / ``BEGIN IMMEDIATE``, Alembic ``migrate``.
* ``base``: ``StoreBase``: lifecycle and the read / write transaction helpers.
* ``rows``: row <-> record mapping (``Task``, ``Attempt``, ``ProviderState``) and shared column values.
* ``queue``: tasks, claiming, release and the operator actions (cancel, requeue).
* ``attempts``: an attempt's life: start, fencing, progress, leases, finish, reaping, orphans.
* ``reports``: metrics aggregates, load and spend, events, counts and usage.
* ``learning``: finished attempts with their task's fate (learned routing, ``adw stats``), recent durations.
* ``pruning``: retention (deleting old rows, keeping their totals and source state).
* ``browse``: the web console's reads: a filtered keyset task page, spend series, a change marker.
* ``coordination``: source state, provider health, the coordinators registry, the leader lease.
* ``text``: what makes any text storable on both backends (the column types the schema uses).
"""

from __future__ import annotations

from adw_modules.queue.store.attempts import REAPED_MESSAGE, AttemptsMixin
from adw_modules.queue.store.base import UTC, StoreBase
from adw_modules.queue.store.browse import BrowseMixin, TaskFilter
from adw_modules.queue.store.coordination import CoordinationMixin
from adw_modules.queue.store.engine import (
    MIGRATIONS_DIR,
    PG_MIGRATION_LOCK_KEY,
    SQLITE_BUSY_TIMEOUT_S,
    alembic_config,
    migrate,
)
from adw_modules.queue.store.learning import AttemptFact, LearningMixin
from adw_modules.queue.store.pruning import PruningMixin
from adw_modules.queue.store.queue import TaskQueueMixin
from adw_modules.queue.store.reports import (
    DURATION_BUCKETS_S,
    RECOVERED_EVENT,
    TOKEN_KINDS,
    UNLABELLED,
    USAGE_GROUPS,
    ReportsMixin,
)

__all__ = [
    "DURATION_BUCKETS_S",
    "MIGRATIONS_DIR",
    "PG_MIGRATION_LOCK_KEY",
    "REAPED_MESSAGE",
    "RECOVERED_EVENT",
    "SQLITE_BUSY_TIMEOUT_S",
    "TOKEN_KINDS",
    "UNLABELLED",
    "USAGE_GROUPS",
    "UTC",
    "AttemptFact",
    "AttemptsMixin",
    "BrowseMixin",
    "CoordinationMixin",
    "LearningMixin",
    "PruningMixin",
    "ReportsMixin",
    "Store",
    "StoreBase",
    "TaskFilter",
    "TaskQueueMixin",
    "alembic_config",
    "migrate",
]


class Store(TaskQueueMixin, AttemptsMixin, PruningMixin, CoordinationMixin, LearningMixin, BrowseMixin):
    """The coordinator's durable state.  Thread-safe: share one Store per process."""
