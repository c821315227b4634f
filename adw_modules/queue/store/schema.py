"""The coordinator's tables, for SQLite and PostgreSQL alike.

This metadata is the reference the Alembic migrations must reproduce exactly
(tests/queue/store/test_migrations.py compares the two); the migrations, not
``create_all``, build real databases.  Invariants the coordinator relies on are
constraints here, each with the reason it exists, so a bug in Python cannot
quietly break them.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from adw_modules.queue.store.text import EscapedText, StorableJSON, StorableString, StorableText
from adw_modules.queue.tasks import PRIORITY_RANK, TaskState

UTC = dt.UTC

# Deterministic names: migrations and create_all must agree on them, and an
# IntegrityError names the rule that was broken.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(sa.TypeDecorator[dt.datetime]):
    """Aware UTC datetimes in and out; naive datetimes are refused.

    PostgreSQL keeps ``timestamptz``.  SQLite has no time zone type, so the value is
    stored as naive UTC text in one fixed format, which keeps SQL comparisons
    (``lease_expires_at < :now``) correct as plain string comparisons.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: the store takes timezone-aware datetimes only")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# JSONB on PostgreSQL (comparable, compact); SQLite's JSON is text checked by json1.  Every
# string in it, like every text column's, is made storable on write (see store/text.py).
JSONType: Any = StorableJSON()

STATES_SQL = ", ".join(f"'{s.value}'" for s in TaskState)
CLAIMABLE_STATES_SQL = f"'{TaskState.QUEUED.value}', '{TaskState.RETRY_WAIT.value}'"
PRIORITY_RANK_SQL = " OR ".join(f"(priority = '{p}' AND priority_rank = {r})" for p, r in PRIORITY_RANK.items())

tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(64), nullable=False),
    sa.Column("external_id", sa.String(255), nullable=False),
    sa.Column("title", EscapedText(), nullable=False),
    sa.Column("body", EscapedText(), nullable=False),
    sa.Column("labels", JSONType, nullable=False),
    sa.Column("priority", sa.String(16), nullable=False),
    # Denormalised from priority so the claim query can walk an index in claim order.
    sa.Column("priority_rank", sa.SmallInteger, nullable=False),
    sa.Column("repo", sa.String(255)),
    sa.Column("url", StorableText()),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("retry_count", sa.Integer, nullable=False),
    sa.Column("attempt_count", sa.Integer, nullable=False),
    sa.Column("not_before", UTCDateTime()),
    sa.Column("wait_reason", StorableText()),
    sa.Column("last_error", StorableText()),
    sa.Column("last_error_kind", sa.String(64)),
    sa.Column("owner", sa.String(255)),
    sa.Column("lease_expires_at", UTCDateTime()),
    # No foreign key: tasks <-> attempts would be a cycle that SQLite cannot ALTER in.
    # Every write that sets or clears it is fenced on owner, so it only ever names
    # this task's running attempt (or nothing).
    sa.Column("current_attempt_id", sa.Integer),
    sa.Column("excluded_targets", JSONType, nullable=False),
    sa.Column("cancel_requested", sa.Boolean, nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    # When the current round began (`adw retry --reset`, a /adw follow-up, a re-label); None:
    # at creation.  The per-task budget counts the spend of this round only.
    sa.Column("round_started_at", UTCDateTime()),
    sa.Column("cancel_reason", sa.Text),  # migration 0007
    # One task per issue however many coordinators poll GitHub at once.
    sa.UniqueConstraint("source", "external_id"),
    sa.CheckConstraint(f"state IN ({STATES_SQL})", name="state"),
    # A running task always has an owner and a lease, so the reaper can find it when
    # the owner dies; any other task has neither, so no stale owner can fence-pass.
    sa.CheckConstraint(
        "(state = 'running' AND owner IS NOT NULL AND lease_expires_at IS NOT NULL)"
        " OR (state <> 'running' AND owner IS NULL AND lease_expires_at IS NULL"
        " AND current_attempt_id IS NULL)",
        name="lease",
    ),
    # The claim order reads priority_rank; it must never disagree with priority.
    sa.CheckConstraint(PRIORITY_RANK_SQL, name="priority"),
    sa.CheckConstraint("retry_count >= 0 AND attempt_count >= 0", name="counts"),
)

# The claim predicate: claim_task walks this in (priority, age) order.
sa.Index(
    None,
    tasks.c.priority_rank,
    tasks.c.created_at,
    tasks.c.id,
    postgresql_where=sa.text(f"state IN ({CLAIMABLE_STATES_SQL})"),
    sqlite_where=sa.text(f"state IN ({CLAIMABLE_STATES_SQL})"),
)
# The reaper's predicate.
sa.Index(
    None,
    tasks.c.lease_expires_at,
    postgresql_where=sa.text("state = 'running'"),
    sqlite_where=sa.text("state = 'running'"),
)
sa.Index(None, tasks.c.state, tasks.c.created_at)
# counts_by_state_priority (`adw status`, metrics): a covering index, not every task row (0008).
sa.Index(None, tasks.c.state, tasks.c.priority)
# list_tasks(): newest first without sorting the whole table (0008).
sa.Index(None, tasks.c.created_at, tasks.c.id)

attempts = sa.Table(
    "attempts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("task_id", sa.Integer, sa.ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("provider", sa.String(64), nullable=False),
    sa.Column("model", sa.String(255), nullable=False),
    sa.Column("rule", sa.String(255)),
    sa.Column("routing", JSONType, nullable=False),
    sa.Column("config_fingerprint", sa.String(128), nullable=False),
    sa.Column("owner", sa.String(255), nullable=False),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer),
    sa.Column("pgid", sa.Integer),
    sa.Column("create_time", sa.Float),
    sa.Column("started_at", UTCDateTime(), nullable=False),
    sa.Column("ended_at", UTCDateTime()),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("outcome", sa.String(64)),
    sa.Column("error_kind", sa.String(64)),
    sa.Column("error_message", StorableText()),
    sa.Column("input_tokens", sa.BigInteger, nullable=False),
    sa.Column("output_tokens", sa.BigInteger, nullable=False),
    sa.Column("cache_read_tokens", sa.BigInteger, nullable=False),
    sa.Column("cache_write_tokens", sa.BigInteger, nullable=False),
    sa.Column("cost_usd", sa.Float),
    sa.Column("cost_source", sa.String(64)),
    sa.Column("log_path", StorableText()),
    sa.Column("session_id", StorableString(255)),
    sa.Column("result_text", StorableText()),
    sa.Column("failover_from", sa.String(255)),
    sa.Column("exit_code", sa.Integer),
    sa.Column("stderr_tail", StorableText()),
    sa.Column("model_usage", JSONType),
    # Attempt numbers are how logs and GitHub comments name an attempt: never reused.
    sa.UniqueConstraint("task_id", "number"),
    sa.CheckConstraint("state IN ('running', 'finished')", name="state"),
    # A finished attempt has an end time; a running one has none (reports rely on it).
    sa.CheckConstraint("(state = 'running') = (ended_at IS NULL)", name="ended"),
)

# Never two live attempts of one task: the last line of defence behind the fenced
# claim, whatever a coordinator's Python does (procrastinate's "one doing job per lock").
sa.Index(
    "ux_attempts_one_running_per_task",
    attempts.c.task_id,
    unique=True,
    postgresql_where=sa.text("state = 'running'"),
    sqlite_where=sa.text("state = 'running'"),
)
# running_attempts(), running_count_by_provider(): only the live few.
sa.Index(
    None,
    attempts.c.host,
    attempts.c.owner,
    postgresql_where=sa.text("state = 'running'"),
    sqlite_where=sa.text("state = 'running'"),
)
# rpm limits and spend: attempts started in a recent window; cost_usd in it so the day's
# spend per provider is summed from the index alone (0010).
sa.Index(None, attempts.c.started_at, attempts.c.provider, attempts.c.cost_usd)
# running_attempts() on SQLite, whose planner cannot match the partial indexes above when the
# state is a bound parameter (0008).
sa.Index(None, attempts.c.state, attempts.c.id)

provider_state = sa.Table(
    "provider_state",
    metadata,
    sa.Column("provider", sa.String(64), primary_key=True),
    sa.Column("circuit", sa.String(16), nullable=False),
    sa.Column("cooldown_until", UTCDateTime()),
    sa.Column("cooldown_reason", StorableText()),
    sa.Column("trips", sa.Integer, nullable=False),
    sa.Column("consecutive_failures", sa.Integer, nullable=False),
    sa.Column("probe_attempt_id", sa.Integer),
    sa.Column("disabled_reason", StorableText()),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("recent", JSONType, nullable=False),
    sa.CheckConstraint("circuit IN ('closed', 'open', 'half_open')", name="circuit"),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("message", StorableText(), nullable=False),
    sa.Column("task_id", sa.Integer, sa.ForeignKey("tasks.id", ondelete="CASCADE")),
    sa.Column("attempt_id", sa.Integer, sa.ForeignKey("attempts.id", ondelete="CASCADE")),
    sa.Column("provider", sa.String(64)),
    sa.Column("data", JSONType),
)
sa.Index(None, events.c.task_id, events.c.id)

coordinators = sa.Table(
    "coordinators",
    metadata,
    sa.Column("id", sa.String(255), primary_key=True),  # the owner string written on leases
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("started_at", UTCDateTime(), nullable=False),
    sa.Column("heartbeat_at", UTCDateTime(), nullable=False),
)

# One row per singleton duty (e.g. polling GitHub); the primary key makes the holder unique.
leader_leases = sa.Table(
    "leader_leases",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("owner", sa.String(255), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
)

# What a task's source remembers about it between polls (e.g. for GitHub: the label event
# that triggered it, the id of its progress comment).  One row per task, dropped with it.
source_state = sa.Table(
    "source_state",
    metadata,
    sa.Column("task_id", sa.Integer, sa.ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("data", JSONType, nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

# What a source remembered about a task that retention deleted, so the source still knows
# what it already did (a GitHub issue keeps its trigger label after the task ends; without
# this, pruning the task would make that old label look like a new request).
retired_sources = sa.Table(
    "retired_sources",
    metadata,
    sa.Column("source", sa.String(64), primary_key=True),
    sa.Column("external_id", sa.String(255), primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("data", JSONType, nullable=False),
    sa.Column("retired_at", UTCDateTime(), nullable=False),
)

# Metric totals of rows retention deleted, so the Prometheus counters (sums over attempts and
# events) never go down: metric is "<group>.<field>" (e.g. "by_target.n") or "recoveries",
# labels the group's label values as a JSON array.
retired_counts = sa.Table(
    "retired_counts",
    metadata,
    sa.Column("metric", sa.String(64), primary_key=True),
    sa.Column("labels", sa.String(1024), primary_key=True),
    sa.Column("value", sa.Float, nullable=False),
)

# GitHub webhook deliveries already taken (``X-GitHub-Delivery``): the primary key makes "first
# to record it acts on it" hold across every coordinator behind a load balancer.
webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("delivery_id", sa.String(64), primary_key=True),
    sa.Column("event", sa.String(64), nullable=False),
    sa.Column("received_at", UTCDateTime(), nullable=False),
    sa.Index("ix_webhook_deliveries_received_at", "received_at"),
)
