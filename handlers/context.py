"""What every handler receives: the database session, the platform port, the clock, settings and the caller."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlmodel import Session

from handlers.ports import ChatPlatform, Clock, Invocation
from storage.models import Member


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
