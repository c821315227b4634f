"""Initial schema: tasks, attempts, provider_state, events, coordinators, leader_leases.

Revision ID: 0001
Revises:
Create Date: 2026-01-01

Frozen: types are spelled out here rather than imported from store_schema, so later
edits to the metadata cannot change what this revision builds.  tests/queue/store compares
the result with ``metadata.create_all``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# store_schema.UTCDateTime stores through this type; JSONB on PostgreSQL, JSON text on SQLite.
TIMESTAMP = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "coordinators",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=False),
        sa.Column("heartbeat_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_coordinators")),
    )
    op.create_table(
        "leader_leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("owner", sa.String(length=255), nullable=False),
        sa.Column("expires_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leader_leases")),
    )
    op.create_table(
        "provider_state",
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("circuit", sa.String(length=16), nullable=False),
        sa.Column("cooldown_until", TIMESTAMP, nullable=True),
        sa.Column("cooldown_reason", sa.Text(), nullable=True),
        sa.Column("trips", sa.Integer(), nullable=False),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("probe_attempt_id", sa.Integer(), nullable=True),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("recent", JSON, nullable=False),
        sa.CheckConstraint("circuit IN ('closed', 'open', 'half_open')", name=op.f("ck_provider_state_circuit")),
        sa.PrimaryKeyConstraint("provider", name=op.f("pk_provider_state")),
    )
    op.create_table(
        "tasks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("labels", JSON, nullable=False),
        sa.Column("priority", sa.String(length=16), nullable=False),
        sa.Column("priority_rank", sa.SmallInteger(), nullable=False),
        sa.Column("repo", sa.String(length=255), nullable=True),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("retry_count", sa.Integer(), nullable=False),
        sa.Column("attempt_count", sa.Integer(), nullable=False),
        sa.Column("not_before", TIMESTAMP, nullable=True),
        sa.Column("wait_reason", sa.Text(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_kind", sa.String(length=64), nullable=True),
        sa.Column("owner", sa.String(length=255), nullable=True),
        sa.Column("lease_expires_at", TIMESTAMP, nullable=True),
        sa.Column("current_attempt_id", sa.Integer(), nullable=True),
        sa.Column("excluded_targets", JSON, nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.CheckConstraint(
            "(priority = 'critical' AND priority_rank = 0) OR (priority = 'high' AND priority_rank = 1)"
            " OR (priority = 'normal' AND priority_rank = 2) OR (priority = 'low' AND priority_rank = 3)",
            name=op.f("ck_tasks_priority"),
        ),
        sa.CheckConstraint(
            "(state = 'running' AND owner IS NOT NULL AND lease_expires_at IS NOT NULL)"
            " OR (state <> 'running' AND owner IS NULL AND lease_expires_at IS NULL"
            " AND current_attempt_id IS NULL)",
            name=op.f("ck_tasks_lease"),
        ),
        sa.CheckConstraint(
            "state IN ('queued', 'running', 'retry_wait', 'succeeded', 'failed', 'cancelled')",
            name=op.f("ck_tasks_state"),
        ),
        sa.CheckConstraint("retry_count >= 0 AND attempt_count >= 0", name=op.f("ck_tasks_counts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tasks")),
        sa.UniqueConstraint("source", "external_id", name=op.f("uq_tasks_source_external_id")),
    )
    op.create_index(
        op.f("ix_tasks_lease_expires_at"),
        "tasks",
        ["lease_expires_at"],
        unique=False,
        postgresql_where=sa.text("state = 'running'"),
        sqlite_where=sa.text("state = 'running'"),
    )
    op.create_index(
        op.f("ix_tasks_priority_rank_created_at_id"),
        "tasks",
        ["priority_rank", "created_at", "id"],
        unique=False,
        postgresql_where=sa.text("state IN ('queued', 'retry_wait')"),
        sqlite_where=sa.text("state IN ('queued', 'retry_wait')"),
    )
    op.create_index(op.f("ix_tasks_state_created_at"), "tasks", ["state", "created_at"], unique=False)

    op.create_table(
        "attempts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=255), nullable=False),
        sa.Column("rule", sa.String(length=255), nullable=True),
        sa.Column("routing", JSON, nullable=False),
        sa.Column("config_fingerprint", sa.String(length=128), nullable=False),
        sa.Column("owner", sa.String(length=255), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("pgid", sa.Integer(), nullable=True),
        sa.Column("create_time", sa.Float(), nullable=True),
        sa.Column("started_at", TIMESTAMP, nullable=False),
        sa.Column("ended_at", TIMESTAMP, nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.String(length=64), nullable=True),
        sa.Column("error_kind", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cache_read_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cache_write_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=True),
        sa.Column("cost_source", sa.String(length=64), nullable=True),
        sa.Column("log_path", sa.Text(), nullable=True),
        sa.Column("session_id", sa.String(length=255), nullable=True),
        sa.Column("result_text", sa.Text(), nullable=True),
        sa.Column("failover_from", sa.String(length=255), nullable=True),
        sa.CheckConstraint("(state = 'running') = (ended_at IS NULL)", name=op.f("ck_attempts_ended")),
        sa.CheckConstraint("state IN ('running', 'finished')", name=op.f("ck_attempts_state")),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], name=op.f("fk_attempts_task_id_tasks"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attempts")),
        sa.UniqueConstraint("task_id", "number", name=op.f("uq_attempts_task_id_number")),
    )
    op.create_index(
        op.f("ix_attempts_host_owner"),
        "attempts",
        ["host", "owner"],
        unique=False,
        postgresql_where=sa.text("state = 'running'"),
        sqlite_where=sa.text("state = 'running'"),
    )
    op.create_index(op.f("ix_attempts_started_at_provider"), "attempts", ["started_at", "provider"], unique=False)
    op.create_index(
        "ux_attempts_one_running_per_task",
        "attempts",
        ["task_id"],
        unique=True,
        postgresql_where=sa.text("state = 'running'"),
        sqlite_where=sa.text("state = 'running'"),
    )

    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=True),
        sa.Column("attempt_id", sa.Integer(), nullable=True),
        sa.Column("provider", sa.String(length=64), nullable=True),
        sa.Column("data", JSON, nullable=True),
        sa.ForeignKeyConstraint(
            ["attempt_id"], ["attempts.id"], name=op.f("fk_events_attempt_id_attempts"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], name=op.f("fk_events_task_id_tasks"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    op.create_index(op.f("ix_events_task_id_id"), "events", ["task_id", "id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_events_task_id_id"), table_name="events")

    op.drop_table("events")
    op.drop_index(
        "ux_attempts_one_running_per_task",
        table_name="attempts",
        postgresql_where=sa.text("state = 'running'"),
        sqlite_where=sa.text("state = 'running'"),
    )
    op.drop_index(op.f("ix_attempts_started_at_provider"), table_name="attempts")
    op.drop_index(
        op.f("ix_attempts_host_owner"),
        table_name="attempts",
        postgresql_where=sa.text("state = 'running'"),
        sqlite_where=sa.text("state = 'running'"),
    )

    op.drop_table("attempts")
    op.drop_index(op.f("ix_tasks_state_created_at"), table_name="tasks")
    op.drop_index(
        op.f("ix_tasks_priority_rank_created_at_id"),
        table_name="tasks",
        postgresql_where=sa.text("state IN ('queued', 'retry_wait')"),
        sqlite_where=sa.text("state IN ('queued', 'retry_wait')"),
    )
    op.drop_index(
        op.f("ix_tasks_lease_expires_at"),
        table_name="tasks",
        postgresql_where=sa.text("state = 'running'"),
        sqlite_where=sa.text("state = 'running'"),
    )

    op.drop_table("tasks")
    op.drop_table("provider_state")
    op.drop_table("leader_leases")
    op.drop_table("coordinators")
