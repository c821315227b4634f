"""attempts: exit code, stderr tail and per-model usage (tokens and cost of each model an attempt used).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    json_type = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    op.add_column("attempts", sa.Column("exit_code", sa.Integer(), nullable=True))
    op.add_column("attempts", sa.Column("stderr_tail", sa.Text(), nullable=True))
    op.add_column("attempts", sa.Column("model_usage", json_type, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        batch.drop_column("model_usage")
        batch.drop_column("stderr_tail")
        batch.drop_column("exit_code")
