"""The composition root: builds the engine, the platform adapter, the clock and the core, once."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine

from bot.config import Settings
from handlers.app import CopBot
from handlers.context import CoreConfig
from handlers.ports import ChatPlatform, Clock, SystemClock
from storage.engine import make_engine, migrate

log = logging.getLogger(__name__)

DueJob = Callable[[dt.datetime], int]


@dataclass
class Container:
    """Everything a running copbot needs, built once at start-up."""

    settings: Settings
    engine: Engine
    clock: Clock
    platform: ChatPlatform
    bot: CopBot
    due_jobs: dict[str, DueJob] = field(default_factory=dict)

    def run_due_work(self) -> dict[str, int]:
        """Run every scheduled job for the current time; returns how much each one did."""
        now = self.clock.now()
        return {name: job(now) for name, job in self.due_jobs.items()}

    def close(self) -> None:
        self.engine.dispose()


def core_config(settings: Settings) -> CoreConfig:
    """The part of the settings the core sees."""
    return CoreConfig(
        creators=settings.creators,
        timezone=settings.timezone,
        story_emoji=settings.story_emoji,
        incident_url=settings.incident_url,
    )


def build(
    settings: Settings, *, platform: ChatPlatform, clock: Clock | None = None, engine: Engine | None = None
) -> Container:
    """Open (and migrate) the database and wire the core to `platform`. Raises DatabaseUnavailable."""
    engine = engine or make_engine(settings.database_url)
    migrate(engine)
    clock = clock or SystemClock()
    bot = CopBot(engine=engine, platform=platform, clock=clock, config=core_config(settings))
    return Container(settings=settings, engine=engine, clock=clock, platform=platform, bot=bot)
