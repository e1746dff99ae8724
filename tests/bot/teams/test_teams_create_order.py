"""`create` on Teams in a crash-safe order (issue 12), through the inbox (issue 14): a create that stopped after Graph
made the channel is retried by the worker, and the retry (or, once the row is given up, the next create) finds that
channel in copbot's team (Graph list channels) instead of making `cop-falls-prevention-2`.
"""

from __future__ import annotations

import datetime as dt

import pytest
from sqlmodel import Session, select

from bot.worker import SORRY_PARKED
from storage import repository as repo
from storage.inbox import InboxStatus
from storage.models import Community
from tests.bot.teams.conftest import TeamsWorld


def crash(**_: object) -> None:
    raise RuntimeError("the process stopped here")


def communities(world: TeamsWorld) -> list[Community]:
    with Session(world.engine) as db:
        return list(db.exec(select(Community)))


def retry(world: TeamsWorld) -> None:
    """Let the clock pass every back-off, and wait for the worker to try the row again."""
    world.clock.advance(dt.timedelta(minutes=5))
    world.settle()


def test_a_create_stopped_after_graph_made_the_channel_is_retried_with_that_channel(
    world: TeamsWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(repo, "open_community", crash)
    before = len(world.cloud.connector.calls)
    assert world.say("create Falls prevention", channel=True) == ""  # nothing said yet: the row waits to retry
    [made] = world.team.channels.values()
    [row] = world.inbox()
    assert (row.status, row.attempts, row.last_error) == (InboxStatus.PENDING, 1, "runtimeerror")
    monkeypatch.undo()

    retry(world)

    assert "Created **Falls prevention** with the channel `cop-falls-prevention`" in world.replies_since(before)
    assert [c["displayName"] for c in world.team.channels.values()] == ["cop-falls-prevention"]
    [community] = communities(world)
    assert community.channel_id == made["id"]
    assert [r.status for r in world.inbox()] == [InboxStatus.DONE]


def test_a_create_given_up_after_graph_made_the_channel_is_finished_by_the_next_create(
    world: TeamsWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(repo, "open_community", crash)
    before = len(world.cloud.connector.calls)
    world.say("create Falls prevention", channel=True)
    while world.inbox()[0].status != InboxStatus.PARKED:
        retry(world)
    # Parked after its last try: Alice is told once, in her 1:1 chat, to try again.
    world.cloud.connector.wait_for(lambda calls: SORRY_PARKED in world.replies_since(before))
    assert world.replies_since(before).count(SORRY_PARKED) == 1
    monkeypatch.undo()
    [made] = world.team.channels.values()
    assert [c.channel_id for c in communities(world)] == [None]  # reserved, never opened
    world.clock.advance(dt.timedelta(minutes=3))

    reply = world.say("create Falls prevention", channel=True)

    assert "Created **Falls prevention** with the channel `cop-falls-prevention`" in reply
    assert [c["displayName"] for c in world.team.channels.values()] == ["cop-falls-prevention"]
    [community] = communities(world)
    assert community.channel_id == made["id"]
