"""rhythm: prompt schedule columns, occurrences, the outbox, custom prompts and reflections

Revision ID: 0003_rhythm
Revises: 0002
Create Date: 2026-11-25 19:15:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.types

revision: str = "0003_rhythm"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC = storage.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("community", schema=None) as batch_op:
        batch_op.add_column(sa.Column("prompt_weekday", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("prompt_time", sa.String(length=5), nullable=True))
        batch_op.add_column(sa.Column("prompt_mode", sa.String(length=8), nullable=False, server_default="channel"))
        batch_op.add_column(sa.Column("prompt_paused", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column("prompt_since", UTC, nullable=True))
        batch_op.add_column(
            sa.Column("holiday_policy", sa.String(length=20), nullable=False, server_default="next-working-day")
        )

    op.create_table(
        "prompt_occurrence",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=120), nullable=False),
        sa.Column("community_id", sa.Integer(), nullable=False),
        sa.Column("prompt_id", sa.String(length=80), nullable=False),
        sa.Column("mode", sa.String(length=8), nullable=False),
        sa.Column("due_at", UTC, nullable=False),
        sa.Column("skipped", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(["community_id"], ["community.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key", name="uq_prompt_occurrence_key"),
    )
    op.create_index("ix_prompt_occurrence_community_id", "prompt_occurrence", ["community_id"])

    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dedupe_key", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("community_id", sa.Integer(), nullable=True),
        sa.Column("occurrence_id", sa.Integer(), nullable=True),
        sa.Column("member_id", sa.Integer(), nullable=True),
        sa.Column("destination", sa.String(length=140), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("due_at", UTC, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTC, nullable=True),
        sa.Column("lease_until", UTC, nullable=True),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("platform_message_id", sa.String(length=128), nullable=True),
        sa.Column("platform_channel_id", sa.String(length=128), nullable=True),
        sa.Column("sent_at", UTC, nullable=True),
        sa.Column("last_error", sa.String(length=64), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dedupe_key", name="uq_outbox_dedupe_key"),
    )
    op.create_index("ix_outbox_ready", "outbox", ["status", "due_at", "id"])
    op.create_index("ix_outbox_destination", "outbox", ["destination", "sent_at"])
    op.create_index("ix_outbox_community_id", "outbox", ["community_id"])
    op.create_index("ix_outbox_occurrence_id", "outbox", ["occurrence_id"])

    op.create_table(
        "custom_prompt",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("community_id", sa.Integer(), nullable=False),
        sa.Column("text", sa.String(length=500), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(["community_id"], ["community.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_custom_prompt_community_id", "custom_prompt", ["community_id"])

    op.create_table(
        "reflection",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("occurrence_id", sa.Integer(), nullable=False),
        sa.Column("outbox_id", sa.Integer(), nullable=True),
        sa.Column("community_id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("source_channel", sa.String(length=128), nullable=False),
        sa.Column("source_message", sa.String(length=128), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("promoted_story_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["community_id"], ["community.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["member_id"], ["member.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["occurrence_id"], ["prompt_occurrence.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source_channel", "source_message", name="uq_reflection_source"),
    )
    for column in ("occurrence_id", "community_id", "member_id"):
        op.create_index(f"ix_reflection_{column}", "reflection", [column])


def downgrade() -> None:
    op.drop_table("reflection")
    op.drop_table("custom_prompt")
    op.drop_table("outbox")
    op.drop_table("prompt_occurrence")
    with op.batch_alter_table("community", schema=None) as batch_op:
        for column in (
            "holiday_policy",
            "prompt_since",
            "prompt_paused",
            "prompt_mode",
            "prompt_time",
            "prompt_weekday",
        ):
            batch_op.drop_column(column)
