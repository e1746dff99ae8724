"""Prompts on Slack: scheduled by command, sent through the outbox, answered in the thread or the DM."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from slack_bolt import App, BoltRequest
from sqlalchemy import Engine
from sqlmodel import Session, select

from bot.dispatcher import Dispatcher
from bot.slack.app import SlackDeps, build_app
from bot.slack.platform import SlackPlatform, make_client
from handlers import reflections
from handlers.app import CopBot
from handlers.context import CoreConfig
from storage.rhythm import OutboxItem, Reflection
from tests.bot.slack.workers import worker_running
from tests.conftest import FixedClock
from tests.fakes import slack_signing as signing
from tests.fakes.slack_api import BOT_TOKEN, FakeSlack


@pytest.fixture
def setup(fake_slack: FakeSlack, file_engine: Engine, clock: FixedClock) -> Iterator[tuple[App, Dispatcher]]:
    client = make_client(token=BOT_TOKEN, base_url=fake_slack.url)
    bot = CopBot(engine=file_engine, platform=SlackPlatform(client), clock=clock, config=CoreConfig())
    app = build_app(
        deps=SlackDeps(bot=bot, engine=file_engine, clock=clock), client=client, signing_secret=signing.SIGNING_SECRET
    )
    sender = SlackPlatform(make_client(token=BOT_TOKEN, base_url=fake_slack.url, wait_on_rate_limit=False))
    dispatcher = Dispatcher(engine=file_engine, platform=sender, clock=clock, workspace_rate=1000, channel_rate=1000)
    with worker_running(bot=bot, client=client, engine=file_engine, clock=clock):
        yield app, dispatcher


def command(app: App, fake: FakeSlack, text: str, *, user: str = "U0ALICE", channel: str = "C0GENERAL") -> str:
    before = len(fake.responses)
    request = signing.signed_slash_command(text, user_id=user, channel_id=channel, response_url=fake.response_url())
    app.dispatch(BoltRequest(body=request.body, headers=request.headers))
    return str(fake.wait_for_responses(before + 1)[before]["text"])


def test_channel_prompt_and_thread_reply_become_a_reflection(
    setup: tuple[App, Dispatcher], fake_slack: FakeSlack, file_engine: Engine, clock: FixedClock
) -> None:
    app, dispatcher = setup
    command(app, fake_slack, "create Falls prevention")
    channel = fake_slack.channel_named("cop-falls-prevention")
    assert channel is not None
    command(app, fake_slack, "join falls-prevention", user="U0BOB")
    reply = command(app, fake_slack, "prompt schedule wednesday 10:00 channel", channel=channel.id)
    assert "every Wednesday at 10:00 (Europe/London), in the channel" in reply
    clock.at = dt.datetime(2026, 12, 2, 10, 1, tzinfo=dt.UTC)
    with Session(file_engine) as db:
        assert reflections.plan_due(db=db, now=clock.now(), config=CoreConfig()) == 1
    assert dispatcher.run() == 1
    prompt = [m for m in fake_slack.messages_in(channel.id) if "Reflective prompt" in m.text][-1]
    with Session(file_engine) as db:
        row = db.exec(select(OutboxItem)).one()
        assert (row.status, row.platform_message_id, row.platform_channel_id) == ("sent", prompt.ts, channel.id)
    event = signing.event_callback(
        "message", user="U0BOB", channel=channel.id, channel_type="channel", thread_ts=prompt.ts,
        text="Our huddle spotted a deteriorating patient early", ts="1764669700.000200",
    )  # fmt: skip
    app.dispatch(BoltRequest(body=signing.signed_event(event).body, headers=signing.signed_event(event).headers))
    thanks = [c for c in fake_slack.wait_for("chat.postMessage", count=3) if c["channel"] == "U0BOB"]
    assert "kept as a reflection for *Falls prevention*" in thanks[-1]["text"]
    with Session(file_engine) as db:
        [kept] = db.exec(select(Reflection)).all()
    assert kept.text == "Our huddle spotted a deteriorating patient early"


def test_an_ordinary_channel_message_is_ignored(
    setup: tuple[App, Dispatcher], fake_slack: FakeSlack, file_engine: Engine
) -> None:
    app, _ = setup
    event = signing.event_callback("message", user="U0BOB", channel="C0GENERAL", channel_type="channel", text="hello")
    signed = signing.signed_event(event)
    assert app.dispatch(BoltRequest(body=signed.body, headers=signed.headers)).status == 200
    with Session(file_engine) as db:
        assert db.exec(select(Reflection)).all() == []
    assert fake_slack.calls_to("chat.postMessage") == []
