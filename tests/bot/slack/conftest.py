"""Fixtures for the Slack adapter tests: a Bolt app wired to the core and to the fake Slack Web API."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from slack_bolt import App
from slack_sdk import WebClient
from sqlalchemy import Engine

from bot.slack.app import SlackDeps, build_app
from bot.slack.platform import SlackPlatform, make_client
from bot.worker import Worker
from handlers.app import CopBot
from handlers.context import CoreConfig
from storage.inbox import open_queue
from tests.bot.slack.workers import slack_worker, worker_running
from tests.conftest import FixedClock
from tests.fakes import slack_signing as signing
from tests.fakes.slack_api import BOT_TOKEN, FakeSlack


@pytest.fixture
def engine(file_engine: Engine) -> Engine:
    """Bolt runs listeners on worker threads: use a real SQLite file, as in production."""
    return file_engine


@pytest.fixture
def slack(fake_slack: FakeSlack, engine: Engine, clock: FixedClock) -> Iterator[tuple[App, FakeSlack]]:
    """The copbot Bolt app (HTTP mode, signature checks on), an inbox worker running what it stores, and the fake
    Slack both talk to."""
    client = make_client(token=BOT_TOKEN, base_url=fake_slack.url)
    bot = CopBot(engine=engine, platform=SlackPlatform(client), clock=clock, config=CoreConfig())
    app = build_app(
        deps=SlackDeps(bot=bot, engine=engine, clock=clock), client=client, signing_secret=signing.SIGNING_SECRET
    )
    with worker_running(bot=bot, client=client, engine=engine, clock=clock):
        yield app, fake_slack


@dataclass
class ManualSlack:
    """The Bolt app with no worker running: a test starts workers (`worker()`) and runs rows itself."""

    app: App
    fake: FakeSlack
    bot: CopBot
    client: WebClient
    engine: Engine
    clock: FixedClock

    @property
    def queue(self) -> Engine:
        """Where the inbox is (a side file beside the SQLite database)."""
        return open_queue(self.engine)

    def worker(self) -> Worker:
        return slack_worker(bot=self.bot, client=self.client, engine=self.engine, clock=self.clock)


@pytest.fixture
def manual_slack(fake_slack: FakeSlack, engine: Engine, clock: FixedClock) -> ManualSlack:
    client = make_client(token=BOT_TOKEN, base_url=fake_slack.url)
    bot = CopBot(engine=engine, platform=SlackPlatform(client), clock=clock, config=CoreConfig())
    app = build_app(
        deps=SlackDeps(bot=bot, engine=engine, clock=clock), client=client, signing_secret=signing.SIGNING_SECRET
    )
    return ManualSlack(app=app, fake=fake_slack, bot=bot, client=client, engine=engine, clock=clock)
