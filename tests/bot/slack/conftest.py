"""Fixtures for the Slack adapter tests: a Bolt app wired to the core and to the fake Slack Web API."""

from __future__ import annotations

import pytest
from slack_bolt import App
from sqlalchemy import Engine

from bot.slack.app import SlackDeps, build_app
from bot.slack.platform import SlackPlatform, make_client
from handlers.app import CopBot
from handlers.context import CoreConfig
from tests.conftest import FixedClock
from tests.fakes import slack_signing as signing
from tests.fakes.slack_api import BOT_TOKEN, FakeSlack


@pytest.fixture
def engine(file_engine: Engine) -> Engine:
    """Bolt runs listeners on worker threads: use a real SQLite file, as in production."""
    return file_engine


@pytest.fixture
def slack(fake_slack: FakeSlack, engine: Engine, clock: FixedClock) -> tuple[App, FakeSlack]:
    """The copbot Bolt app (HTTP mode, signature checks on) and the fake Slack it talks to."""
    client = make_client(token=BOT_TOKEN, base_url=fake_slack.url)
    bot = CopBot(engine=engine, platform=SlackPlatform(client), clock=clock, config=CoreConfig())
    app = build_app(
        deps=SlackDeps(bot=bot, engine=engine, clock=clock), client=client, signing_secret=signing.SIGNING_SECRET
    )
    return app, fake_slack
