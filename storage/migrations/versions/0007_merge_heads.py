"""merge the stories, intros and Teams branches into one head (no schema change)

Revision ID: 0007_merge_heads
Revises: 0003_stories, 0004_intros, 0006_teams_files
Create Date: 2026-11-27 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0007_merge_heads"
down_revision: str | Sequence[str] | None = ("0003_stories", "0004_intros", "0006_teams_files")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Nothing to change: this revision only joins the three branches so `alembic heads` shows one."""


def downgrade() -> None:
    """Nothing to undo: downgrading splits the history back into its three branches."""
