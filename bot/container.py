"""The composition root: builds the engine, the platform adapter, the clock and the core, once."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlmodel import Session

from bot import metrics
from bot.config import Settings
from bot.dispatcher import Dispatcher
from handlers import introductions, reflections
from handlers.app import CopBot
from handlers.context import CoreConfig
from handlers.ports import ChatPlatform, Clock, SystemClock
from storage.engine import make_engine, migrate
from storage.inbox import close_queue

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
    dispatcher: Dispatcher | None = None

    def run_due_work(self) -> dict[str, int]:
        """Run every scheduled job for the current time; returns how much each one did."""
        now = self.clock.now()
        return {name: job(now) for name, job in self.due_jobs.items()}

    def close(self) -> None:
        close_queue(self.engine)
        self.engine.dispose()


def core_config(settings: Settings) -> CoreConfig:
    """The part of the settings the core sees."""
    return CoreConfig(
        creators=settings.creators,
        timezone=settings.timezone,
        story_emoji=settings.story_emoji,
        incident_url=settings.incident_url,
        holidays=settings.holidays,
    )


def build(
    settings: Settings,
    *,
    platform: ChatPlatform,
    clock: Clock | None = None,
    engine: Engine | None = None,
    delivery_platform: ChatPlatform | None = None,
    send_rate: float = 20.0,
) -> Container:
    """Open (and migrate) the database and wire the core and the outbox to `platform`. Raises DatabaseUnavailable.

    `delivery_platform` is what the dispatcher sends with (on Slack: a client that reports 429s instead of
    waiting); `send_rate` is the workspace-wide budget in messages a second.
    """
    engine = engine or make_engine(settings.database_url)
    migrate(engine)
    clock = clock or SystemClock()
    config = core_config(settings)
    bot = CopBot(engine=engine, platform=platform, clock=clock, config=config, observe=metrics.count_command)
    container = Container(settings=settings, engine=engine, clock=clock, platform=platform, bot=bot)
    dispatcher = Dispatcher(
        engine=engine, platform=delivery_platform or platform, clock=clock, workspace_rate=send_rate
    )

    def tick(now: dt.datetime) -> int:
        with metrics.JOB_SECONDS.labels(job="tick").time(), Session(engine) as db:
            added = reflections.plan_due(db=db, now=now, config=config)
            return added + introductions.plan_due(db=db, now=now, config=config)

    container.due_jobs["tick"] = tick
    container.due_jobs["dispatch"] = lambda now: dispatcher.run(max_seconds=50)
    container.dispatcher = dispatcher
    return container
