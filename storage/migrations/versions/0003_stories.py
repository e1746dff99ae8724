"""stories and their full-text search index (SQLite FTS5 with triggers | PostgreSQL tsvector with GIN)

Revision ID: 0003_stories
Revises: 0002
Create Date: 2026-11-25 21:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import storage.types

revision: str = "0003_stories"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The search DDL is written out here (not imported) so this migration keeps doing what it did when the models move.
SQLITE_UP = (
    """CREATE VIRTUAL TABLE story_fts USING fts5(
        title, situation, action, why_it_works, impact, themes,
        content='story', content_rowid='id', tokenize='porter unicode61 remove_diacritics 2', prefix='3 4')""",
    # `rank` is bm25 with a title match worth most and a theme more than a word in the body (as PostgreSQL's A/B/C).
    "INSERT INTO story_fts(story_fts, rank) VALUES ('rank', 'bm25(8.0, 1.0, 1.0, 1.0, 1.0, 2.0)')",
    """CREATE TRIGGER story_fts_ai AFTER INSERT ON story BEGIN
        INSERT INTO story_fts(rowid, title, situation, action, why_it_works, impact, themes)
        VALUES (new.id, new.title, new.situation, new.action, new.why_it_works, new.impact, new.themes);
    END""",
    """CREATE TRIGGER story_fts_ad AFTER DELETE ON story BEGIN
        INSERT INTO story_fts(story_fts, rowid, title, situation, action, why_it_works, impact, themes)
        VALUES ('delete', old.id, old.title, old.situation, old.action, old.why_it_works, old.impact, old.themes);
    END""",
    # Only a change to an indexed column touches the index (status changes are frequent and need not).
    """CREATE TRIGGER story_fts_au AFTER UPDATE OF title, situation, action, why_it_works, impact, themes ON story
    BEGIN
        INSERT INTO story_fts(story_fts, rowid, title, situation, action, why_it_works, impact, themes)
        VALUES ('delete', old.id, old.title, old.situation, old.action, old.why_it_works, old.impact, old.themes);
        INSERT INTO story_fts(rowid, title, situation, action, why_it_works, impact, themes)
        VALUES (new.id, new.title, new.situation, new.action, new.why_it_works, new.impact, new.themes);
    END""",
)
SQLITE_DOWN = (
    "DROP TRIGGER IF EXISTS story_fts_au",
    "DROP TRIGGER IF EXISTS story_fts_ad",
    "DROP TRIGGER IF EXISTS story_fts_ai",
    "DROP TABLE IF EXISTS story_fts",
)
_BODY = (
    "coalesce(situation, '') || ' ' || coalesce(action, '') || ' ' || coalesce(why_it_works, '') || ' ' || "
    "coalesce(impact, '')"
)
POSTGRESQL_UP = (
    "ALTER TABLE story ADD COLUMN search_vector tsvector GENERATED ALWAYS AS ("
    "setweight(to_tsvector('english'::regconfig, coalesce(title, '')), 'A') || "
    f"setweight(to_tsvector('english'::regconfig, {_BODY}), 'B') || "
    "setweight(to_tsvector('english'::regconfig, replace(coalesce(themes, ''), ',', ' ')), 'C')) STORED",
    "CREATE INDEX ix_story_search_vector ON story USING GIN (search_vector)",
)
POSTGRESQL_DOWN = (
    "DROP INDEX IF EXISTS ix_story_search_vector",
    "ALTER TABLE story DROP COLUMN IF EXISTS search_vector",
)


def upgrade() -> None:
    op.create_table(
        "story",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("community_id", sa.Integer(), nullable=True),
        sa.Column("author_member_id", sa.Integer(), nullable=True),
        sa.Column("capturer_member_id", sa.Integer(), nullable=True),
        sa.Column("title", sqlmodel.sql.sqltypes.AutoString(length=150), nullable=False),
        sa.Column("situation", sqlmodel.sql.sqltypes.AutoString(length=3000), nullable=False),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(length=3000), nullable=False),
        sa.Column("why_it_works", sqlmodel.sql.sqltypes.AutoString(length=3000), nullable=False),
        sa.Column("impact", sqlmodel.sql.sqltypes.AutoString(length=3000), nullable=False),
        sa.Column("recognised", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
        sa.Column("themes", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column("consent_scope", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("show_name", sa.Boolean(), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("source_link", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.Column("source_channel_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
        sa.Column("source_message_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("card_channel_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
        sa.Column("card_message_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("created_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("published_at", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("withdrawn_at", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["author_member_id"], ["member.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["capturer_member_id"], ["member.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["community_id"], ["community.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source_channel_id", "source_message_id", name="uq_story_source"),
    )
    with op.batch_alter_table("story", schema=None) as batch_op:
        batch_op.create_index("ix_story_status_published", ["status", "published_at"], unique=False)
        batch_op.create_index("ix_story_community_status", ["community_id", "status"], unique=False)
        batch_op.create_index(batch_op.f("ix_story_author_member_id"), ["author_member_id"], unique=False)

    statements = POSTGRESQL_UP if op.get_bind().dialect.name == "postgresql" else SQLITE_UP
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    statements = POSTGRESQL_DOWN if op.get_bind().dialect.name == "postgresql" else SQLITE_DOWN
    for statement in statements:
        op.execute(statement)
    with op.batch_alter_table("story", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_story_author_member_id"))
        batch_op.drop_index("ix_story_community_status")
        batch_op.drop_index("ix_story_status_published")
    op.drop_table("story")
