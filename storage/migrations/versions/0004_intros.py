"""intros: introduction schedule columns, rounds, skips, enrolments, groups and their members

Revision ID: 0004_intros
Revises: 0003_rhythm
Create Date: 2026-11-25 19:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.types

revision: str = "0004_intros"
down_revision: str | None = "0003_rhythm"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC = storage.types.UTCDateTime(timezone=True)


def _fk(column: str, table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], [f"{table}.id"], ondelete="CASCADE")


def upgrade() -> None:
    with op.batch_alter_table("community", schema=None) as batch_op:
        batch_op.add_column(sa.Column("intro_every_weeks", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("intro_weekday", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("intro_enrolment", sa.String(length=8), nullable=False, server_default="opt-out"))
        batch_op.add_column(sa.Column("intro_since", UTC, nullable=True))

    op.create_table(
        "intro_round",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=120), nullable=False),
        sa.Column("community_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("due_at", UTC, nullable=False),
        sa.Column("followup_at", UTC, nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("matched_at", UTC, nullable=True),
        sa.Column("participants", sa.Integer(), nullable=False),
        sa.Column("unpaired", sa.Integer(), nullable=False),
        _fk("community_id", "community"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key", name="uq_intro_round_key"),
    )
    op.create_index("ix_intro_round_community_id", "intro_round", ["community_id"])

    op.create_table(
        "intro_skip",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("round_id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        _fk("round_id", "intro_round"),
        _fk("member_id", "member"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("round_id", "member_id", name="uq_intro_skip"),
    )
    op.create_index("ix_intro_skip_round_id", "intro_skip", ["round_id"])
    op.create_index("ix_intro_skip_member_id", "intro_skip", ["member_id"])

    op.create_table(
        "intro_enrolment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("community_id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("choice", sa.String(length=4), nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        _fk("community_id", "community"),
        _fk("member_id", "member"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("community_id", "member_id", name="uq_intro_enrolment"),
    )
    op.create_index("ix_intro_enrolment_community_id", "intro_enrolment", ["community_id"])
    op.create_index("ix_intro_enrolment_member_id", "intro_enrolment", ["member_id"])

    op.create_table(
        "intro_group",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("round_id", sa.Integer(), nullable=False),
        sa.Column("starter_id", sa.String(length=80), nullable=False),
        _fk("round_id", "intro_round"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_intro_group_round_id", "intro_group", ["round_id"])

    op.create_table(
        "intro_group_member",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("profession", sa.String(length=100), nullable=True),
        sa.Column("organisation", sa.String(length=100), nullable=True),
        sa.Column("answer", sa.String(length=8), nullable=True),
        sa.Column("answered_at", UTC, nullable=True),
        _fk("group_id", "intro_group"),
        _fk("member_id", "member"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("group_id", "member_id", name="uq_intro_group_member"),
    )
    op.create_index("ix_intro_group_member_group_id", "intro_group_member", ["group_id"])
    op.create_index("ix_intro_group_member_member_id", "intro_group_member", ["member_id"])


def downgrade() -> None:
    op.drop_table("intro_group_member")
    op.drop_table("intro_group")
    op.drop_table("intro_enrolment")
    op.drop_table("intro_skip")
    op.drop_table("intro_round")
    with op.batch_alter_table("community", schema=None) as batch_op:
        for column in ("intro_since", "intro_enrolment", "intro_weekday", "intro_every_weeks"):
            batch_op.drop_column(column)
