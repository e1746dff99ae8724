"""inbox results and the effect journal: a retried request repeats no work and no platform call (issue 14)

Revision ID: 0010_inbox_results
Revises: 0009_inbox
Create Date: 2026-12-03 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.types

revision: str = "0010_inbox_results"
down_revision: str | None = "0009_inbox"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC = storage.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "inbox_result",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("inbox_id", sa.Integer(), nullable=False),
        sa.Column("unit", sa.Integer(), nullable=False),
        sa.Column("steps", sa.Text(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("inbox_id", "unit", name="uq_inbox_result_unit"),
    )
    op.create_index("ix_inbox_result_created_at", "inbox_result", ["created_at"])
    op.create_table(
        "inbox_effect",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("inbox_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(length=200), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("inbox_id", "seq", name="uq_inbox_effect_seq"),
    )
    op.create_index("ix_inbox_effect_created_at", "inbox_effect", ["created_at"])


def downgrade() -> None:
    op.drop_table("inbox_effect")
    op.drop_table("inbox_result")
