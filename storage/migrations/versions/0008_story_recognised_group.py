"""story.recognised_group: a team or group a story thanks ("the night team on ward 7"), as typed

Revision ID: 0008_story_recognised_group
Revises: 0007_merge_heads
Create Date: 2026-12-01 09:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_story_recognised_group"
down_revision: str | None = "0007_merge_heads"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("story") as batch:
        batch.add_column(sa.Column("recognised_group", sa.String(length=200), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("story") as batch:
        batch.drop_column("recognised_group")
