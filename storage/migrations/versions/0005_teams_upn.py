"""teams_upn: people's Entra sign-in names (userPrincipalName), for Teams chat deep links in introductions

Revision ID: 0005_teams_upn
Revises: 0003_teams
Create Date: 2026-11-26 02:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_teams_upn"
down_revision: str | None = "0003_teams"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("teams_user", schema=None) as batch_op:
        batch_op.add_column(sa.Column("upn", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("teams_user", schema=None) as batch_op:
        batch_op.drop_column("upn")
