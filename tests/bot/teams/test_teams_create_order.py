"""`create` on Teams in a crash-safe order (issue 12): a create that stopped after Graph made the channel is finished by
the next one, which finds that channel in copbot's team (Graph list channels) instead of making `cop-falls-2`."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlmodel import Session, select

from storage import repository as repo
from storage.models import Community
from tests.bot.teams.conftest import TeamsWorld


def test_a_create_stopped_after_graph_made_the_channel_is_finished_with_that_channel(
    world: TeamsWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(**_: object) -> None:
        raise RuntimeError("the process stopped here")

    monkeypatch.setattr(repo, "open_community", crash)
    assert "Sorry, something went wrong" in world.say("create Falls prevention", channel=True)
    monkeypatch.undo()
    [made] = world.team.channels.values()
    world.clock.advance(dt.timedelta(minutes=3))

    reply = world.say("create Falls prevention", channel=True)

    assert "Created **Falls prevention** with the channel `cop-falls-prevention`" in reply
    assert [c["displayName"] for c in world.team.channels.values()] == ["cop-falls-prevention"]
    with Session(world.engine) as db:
        [community] = db.exec(select(Community)).all()
    assert community.channel_id == made["id"]
