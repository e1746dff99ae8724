"""Imports every table module so SQLModel.metadata (and Alembic's autogenerate) sees the whole schema."""

from __future__ import annotations

from storage import intros, models, rhythm, stories, teams

__all__ = ["intros", "models", "rhythm", "stories", "teams"]
