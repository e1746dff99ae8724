"""Imports every table module so SQLModel.metadata (and Alembic's autogenerate) sees the whole schema."""

from __future__ import annotations

from storage import inbox, intros, models, rhythm, stories, teams

__all__ = ["inbox", "intros", "models", "rhythm", "stories", "teams"]
