"""`/cop create` on Slack in a crash-safe order (issue 12): the community's row is reserved before
`conversations.create`, so a create that stopped after making the channel is finished by the next one, which adopts
that channel (`conversations.list`, copbot a member) instead of making `cop-…-2`; a channel someone else made with
the name is never adopted."""

from __future__ import annotations

import datetime as dt

import pytest
from slack_bolt import App
from sqlalchemy import Engine
from sqlmodel import Session, select

from storage import repository as repo
from storage.models import Community
from tests.bot.slack.test_slack_app import command
from tests.conftest import FixedClock
from tests.fakes.slack_api import BOT_USER_ID, Channel, FakeSlack


def create_stopped_after_the_channel(
    app: App, fake: FakeSlack, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> Channel:
    """`/cop create Falls` that stops after `conversations.create`; then the reservation's lease runs out."""

    def crash(**_: object) -> None:
        raise RuntimeError("the process stopped here")

    monkeypatch.setattr(repo, "open_community", crash)
    assert command(app, fake, "create Falls").startswith("Sorry, something went wrong")
    monkeypatch.undo()
    made = fake.channel_named("cop-falls")
    assert made is not None
    clock.advance(dt.timedelta(minutes=3))
    return made


def test_a_create_stopped_after_conversations_create_is_finished_with_that_channel(
    slack: tuple[App, FakeSlack], engine: Engine, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, fake = slack
    made = create_stopped_after_the_channel(app, fake, clock, monkeypatch)

    reply = command(app, fake, "create Falls")

    assert "Created *Falls* with the channel `cop-falls`" in reply and "was taken" not in reply
    assert len(fake.calls_to("conversations.create")) == 1 and fake.channel_named("cop-falls-2") is None
    with Session(engine) as db:
        [community] = db.exec(select(Community)).all()
    assert community.channel_id == made.id
    assert any("Welcome to Falls" in m.text for m in fake.messages_in(made.id))


def test_a_channel_someone_else_made_with_the_name_is_not_adopted(
    slack: tuple[App, FakeSlack], engine: Engine, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, fake = slack
    ours = create_stopped_after_the_channel(app, fake, clock, monkeypatch)
    ours.members.remove(BOT_USER_ID)  # as if copbot left it and someone else owns it now

    reply = command(app, fake, "create Falls")

    assert "`cop-falls` was taken, so the channel is `cop-falls-2`" in reply
    with Session(engine) as db:
        [community] = db.exec(select(Community)).all()
    assert community.channel_name == "cop-falls-2"
