"""`/cop create` on Slack in a crash-safe order (issues 12 and 14): the community's row is reserved before
`conversations.create`, and the inbox worker journals each Web API call, so a worker that dies after making the
channel is followed by one that finishes that same request with that same channel (no `cop-…-2`, one reply); a
create given up on is finished by the next `create`, which adopts the channel copbot made; a channel someone else
made with the name is never adopted."""

from __future__ import annotations

import datetime as dt

import pytest
from slack_bolt import BoltRequest
from sqlalchemy import update
from sqlmodel import Session, select

from storage import repository as repo
from storage.inbox import InboxItem
from storage.models import Community
from tests.bot.slack.conftest import ManualSlack
from tests.fakes import slack_signing as signing
from tests.fakes.slack_api import BOT_USER_ID, Channel


class WorkerDied(BaseException):
    """Stands for SIGKILL: not an error the worker handles, it just stops mid-row."""


def send_create(slack: ManualSlack, user: str = "U0ALICE") -> None:
    request = signing.signed_slash_command("create Falls", user_id=user, response_url=slack.fake.response_url())
    response = slack.app.dispatch(BoltRequest(body=request.body, headers=request.headers))
    assert response.status == 200


def die_after_the_channel(slack: ManualSlack, monkeypatch: pytest.MonkeyPatch) -> Channel:
    """A worker runs `/cop create Falls` and dies after `conversations.create`, before the community is stored."""

    def die(**_: object) -> None:
        raise WorkerDied

    monkeypatch.setattr(repo, "open_community", die)
    with pytest.raises(WorkerDied):
        slack.worker().run_once()
    monkeypatch.undo()
    made = slack.fake.channel_named("cop-falls")
    assert made is not None and slack.fake.responses == []
    return made


def assert_made_once_with(slack: ManualSlack, made: Channel) -> None:
    """One reply, "Created" with the channel the first try made; one conversations.create; the community on it."""
    [reply] = slack.fake.responses
    assert "Created *Falls* with the channel `cop-falls`" in reply["text"] and "was taken" not in reply["text"]
    assert len(slack.fake.calls_to("conversations.create")) == 1 and slack.fake.channel_named("cop-falls-2") is None
    with Session(slack.engine) as db:
        [community] = db.exec(select(Community)).all()
    assert community.channel_id == made.id


def test_a_worker_that_dies_after_conversations_create_is_finished_by_the_next_with_that_channel(
    manual_slack: ManualSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    slack = manual_slack
    send_create(slack)
    made = die_after_the_channel(slack, monkeypatch)

    slack.clock.advance(dt.timedelta(seconds=20))  # the dead worker's lease runs out
    assert slack.worker().drain() == 1

    assert_made_once_with(slack, made)
    with Session(slack.queue) as db:
        [row] = db.exec(select(InboxItem)).all()
    assert row.status == "done"
    welcomes = [m for m in slack.fake.messages_in(made.id) if "Welcome to Falls" in m.text]
    assert len(welcomes) == 1


def give_up(slack: ManualSlack) -> None:
    """The dead worker's row parked (as after its workers died five times); three minutes later."""
    with Session(slack.queue) as db:
        db.connection().execute(update(InboxItem).values(status="parked", last_error="lease_expired"))
        db.commit()
    slack.clock.advance(dt.timedelta(minutes=3))


def test_a_create_given_up_on_is_finished_by_the_next_create_with_that_channel(
    manual_slack: ManualSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    slack = manual_slack
    send_create(slack)
    made = die_after_the_channel(slack, monkeypatch)
    give_up(slack)

    send_create(slack)
    assert slack.worker().drain() == 1

    assert_made_once_with(slack, made)


def test_a_channel_someone_else_made_with_the_name_is_not_adopted(
    manual_slack: ManualSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    slack = manual_slack
    send_create(slack)
    ours = die_after_the_channel(slack, monkeypatch)
    ours.members.remove(BOT_USER_ID)  # as if copbot left it and someone else owns it now
    give_up(slack)

    send_create(slack)
    assert slack.worker().drain() == 1

    [reply] = slack.fake.responses
    assert "`cop-falls` was taken, so the channel is `cop-falls-2`" in reply["text"]
    with Session(slack.engine) as db:
        [community] = db.exec(select(Community)).all()
    assert community.channel_name == "cop-falls-2"
