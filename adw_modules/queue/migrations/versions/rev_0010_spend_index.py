"""The day's spend from an index alone (issue 15, the console's overview at scale).

``spend_since`` (the overview's and ``adw status``'s spend today, the daily budget check)
sums ``cost_usd`` per provider over the attempts started since midnight.  With the old
``(started_at, provider)`` index every matching attempt's table row was read for its cost;
``(started_at, provider, cost_usd)`` answers it (and ``attempts_since``, the rpm limits'
count, which the old index served) from the index: the old one is dropped, its prefix is the
new one's.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        op.f("ix_attempts_started_at_provider_cost_usd"),
        "attempts",
        ["started_at", "provider", "cost_usd"],
        unique=False,
    )
    op.drop_index(op.f("ix_attempts_started_at_provider"), table_name="attempts")


def downgrade() -> None:
    op.create_index(op.f("ix_attempts_started_at_provider"), "attempts", ["started_at", "provider"], unique=False)
    op.drop_index(op.f("ix_attempts_started_at_provider_cost_usd"), table_name="attempts")
