"""Indexes for a large store (issue 13, scale): status counts, the task list, running attempts.

With 100,000 mostly finished tasks: ``counts_by_state_priority`` reads a covering index instead
of every task row; ``list_tasks`` (newest first) walks an index instead of sorting the table;
``running_attempts`` finds the live few by state on SQLite too (its partial indexes on
``state = 'running'`` are out of reach there when the state arrives as a bound parameter).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(op.f("ix_tasks_state_priority"), "tasks", ["state", "priority"], unique=False)
    op.create_index(op.f("ix_tasks_created_at_id"), "tasks", ["created_at", "id"], unique=False)
    op.create_index(op.f("ix_attempts_state_id"), "attempts", ["state", "id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_attempts_state_id"), table_name="attempts")
    op.drop_index(op.f("ix_tasks_created_at_id"), table_name="tasks")
    op.drop_index(op.f("ix_tasks_state_priority"), table_name="tasks")
