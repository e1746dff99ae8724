"""teams: conversation references and the people the bot has seen (for proactive messages)

Revision ID: 0003_teams
Revises: 0002
Create Date: 2026-11-26 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.types

revision: str = "0003_teams"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC = storage.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "teams_conversation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("conversation_id", sa.String(length=255), nullable=False),
        sa.Column("conversation_type", sa.String(length=16), nullable=False),
        sa.Column("service_url", sa.String(length=255), nullable=False),
        sa.Column("channel_id", sa.String(length=32), nullable=False),
        sa.Column("team_id", sa.String(length=255), nullable=True),
        sa.Column("team_group_id", sa.String(length=64), nullable=True),
        sa.Column("user_id", sa.String(length=255), nullable=True),
        sa.Column("aad_object_id", sa.String(length=64), nullable=True),
        sa.Column("updated_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "conversation_id", name="uq_teams_conversation"),
    )
    op.create_index("ix_teams_conversation_team", "teams_conversation", ["team_group_id"])
    op.create_table(
        "teams_user",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("bot_user_id", sa.String(length=255), nullable=False),
        sa.Column("aad_object_id", sa.String(length=64), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("service_url", sa.String(length=255), nullable=False),
        sa.Column("personal_conversation_id", sa.String(length=255), nullable=True),
        sa.Column("updated_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "bot_user_id", name="uq_teams_user"),
    )
    op.create_index("ix_teams_user_aad", "teams_user", ["tenant_id", "aad_object_id"])


def downgrade() -> None:
    op.drop_index("ix_teams_user_aad", table_name="teams_user")
    op.drop_table("teams_user")
    op.drop_index("ix_teams_conversation_team", table_name="teams_conversation")
    op.drop_table("teams_conversation")
