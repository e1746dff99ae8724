"""What every handler receives: the database session, the platform port, the clock, settings and the caller."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlmodel import Session

from handlers.ports import ChatPlatform, Clock, Invocation
from storage.models import Member


def row_id(value: str) -> int | None:
    """A row id from a button value or a form's context: ASCII digits that fit a database integer, else None (a
    tampered `²` or a 40-digit value is "no such row", never an error)."""
    value = value.strip().lstrip("#")
    return int(value) if value.isascii() and value.isdigit() and len(value) < 12 else None


@dataclass(frozen=True)
class CoreConfig:
    """The settings the core needs (built by `bot/container.py` from the validated Settings)."""

    creators: frozenset[str] = frozenset()
    timezone: str = "Europe/London"
    story_emoji: str = "bulb"
    incident_url: str | None = None
    holidays: str = "england"


@dataclass
class Context:
    """One unit of work: a session that commits at the end, and who asked, where and when."""

    db: Session
    platform: ChatPlatform
    clock: Clock
    config: CoreConfig
    invocation: Invocation
    actor: Member

    @property
    def now(self) -> dt.datetime:
        """The current time (aware UTC) from the injected clock."""
        return self.clock.now()
