"""teams_files: files waiting for their recipient's consent (Teams' file-consent flow for exports)

Revision ID: 0006_teams_files
Revises: 0005_teams_upn
Create Date: 2026-11-26 02:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.types

revision: str = "0006_teams_files"
down_revision: str | None = "0005_teams_upn"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC = storage.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "teams_pending_file",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key", name="uq_teams_pending_file_key"),
    )
    op.create_index("ix_teams_pending_file_created", "teams_pending_file", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_teams_pending_file_created", table_name="teams_pending_file")
    op.drop_table("teams_pending_file")
