"""Teams through the inbox (issue 14): an activity is written down and acknowledged at once, a worker runs it, and
retries, crashes and a database that cannot write change neither how often it runs nor what the person sees."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from sqlmodel import Session, SQLModel, select

from bot.teams.inbox import KINDS, TeamsKinds
from bot.worker import LEASE, Run, Step, running
from storage import inbox
from storage import teams as refs
from storage.inbox import InboxItem, InboxStatus
from storage.models import Community
from storage.stories import Story
from tests.bot.teams.conftest import MEMBER_ADDED, TeamsWorld, text_of
from tests.bot.teams.test_teams_forms import FIXED_SITUATION, falls, story_dialog, submit, typed_story


class Died(BaseException):
    """The worker process stopping dead: nothing it could catch and write down."""


class DiesDelivering(TeamsKinds):
    """Runs rows as a worker does, and dies at the first delivery: after the core's commit, before any reply."""

    def deliver(self, step: Step, run: Run) -> None:
        raise Died


def communities(world: TeamsWorld) -> list[Community]:
    with Session(world.engine) as db:
        return list(db.exec(select(Community)))


def stories(world: TeamsWorld) -> list[Story]:
    with Session(world.engine) as db:
        return list(db.exec(select(Story)))


# --- written down, then acknowledged ------------------------------------------------------------------------------


def test_a_message_is_written_down_and_acknowledged_and_a_worker_answers_it_once(
    world_without_worker: TeamsWorld,
) -> None:
    world = world_without_worker

    response = world.post(world.personal_message("help"))

    assert response.status_code == 200
    [row] = world.inbox()  # read on another connection: committed before the answer went out
    tenant = world.cloud.tenant_id
    assert (row.kind, row.status, row.platform, row.workspace_id) == ("teams.message", "pending", "teams", tenant)
    assert row.order_key == f"teams:{tenant}:{world.alice.aad}"
    assert json.loads(row.payload)["activity"]["text"] == "help"
    assert world.cloud.connector.calls == []  # no worker, nothing sent

    assert world.new_worker().drain() == 1

    [reply] = world.sent()
    assert "/cop create" in text_of(reply)
    [row] = world.inbox()
    assert (row.status, row.payload) == ("done", "{}")  # what Alice typed is not kept
    with Session(world.engine) as db:
        assert inbox.results(db=db, inbox_id=row.id or 0) == []


def test_the_same_activity_delivered_twice_is_run_once(world: TeamsWorld) -> None:
    activity = world.personal_message("create Falls prevention")

    assert world.post(activity).status_code == 200
    assert world.post(activity).status_code == 200  # Bot Framework's retry carries the same id

    assert len(world.inbox()) == 1
    assert world.replies_since(0).count("Created **Falls prevention**") == 1
    assert len(world.team.channels) == 1


def test_the_same_activity_id_in_another_conversation_is_another_activity(world: TeamsWorld) -> None:
    # Teams message ids are timestamps: only the conversation makes them unique.
    alices = world.personal_message("help")
    bobs = world.personal_message("help", person=world.bob)
    bobs["id"] = alices["id"]

    world.post(alices)
    world.post(bobs)

    assert [r.status for r in world.inbox()] == ["done", "done"]
    assert len(world.received(world.alice)) == len(world.received(world.bob)) == 1


def test_a_channel_message_not_for_copbot_is_acknowledged_and_never_stored(world: TeamsWorld) -> None:
    post = world.channel_post("Lunch is in the break room today", person=world.bob, channel_id=world.team_conversation)

    assert world.post(post).status_code == 200

    assert world.inbox() == []
    assert world.cloud.connector.calls == []


def test_each_member_added_is_a_row_of_their_own(world: TeamsWorld) -> None:
    community = falls(world)
    bob, carol = world.people[1:3]
    activity = world.member_event(MEMBER_ADDED, bob, channel_id=community.channel_id)
    activity["membersAdded"].append({"id": carol.bot_id, "aadObjectId": carol.aad})
    before = len(world.cloud.connector.calls)

    assert world.post(activity).status_code == 200

    rows = [r for r in world.inbox() if r.kind == "teams.update"]
    tenant = world.cloud.tenant_id
    assert [r.order_key for r in rows] == [f"teams:{tenant}:{bob.aad}", f"teams:{tenant}:{carol.aad}"]
    assert [r.status for r in rows] == ["done", "done"]
    assert "You're now a member" in text_of(world.received(bob, since=before))
    assert "You're now a member" in text_of(world.received(carol, since=before))


# --- the database cannot take it -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "model"), [("inbox", InboxItem), ("teams_conversation", refs.TeamsConversation)], ids=["inbox", "address"]
)
def test_a_database_that_cannot_take_the_activity_answers_503_then_the_retry_runs_once(
    world: TeamsWorld, table: str, model: type[SQLModel]
) -> None:
    activity = world.personal_message("create Falls prevention")
    where = world.runtime.adapter.queue if table == "inbox" else world.engine  # the inbox: a side file on SQLite
    with where.begin() as connection:
        connection.exec_driver_sql(f"DROP TABLE {table}")

    response = world.post(activity, settle=False)

    assert response.status_code == 503  # Bot Framework retries: nothing was acknowledged that was not written
    assert world.cloud.connector.calls == []
    assert world.team.channels == {}

    SQLModel.metadata.create_all(where, tables=[model.__table__])  # type: ignore[attr-defined]
    assert world.post(activity).status_code == 200

    assert world.replies_since(0).count("Created **Falls prevention**") == 1
    assert len(world.team.channels) == 1


# --- crashes and failures ----------------------------------------------------------------------------------------


def test_a_worker_that_dies_between_the_commit_and_the_reply_leaves_the_reply_to_the_next_once(
    world_without_worker: TeamsWorld,
) -> None:
    world = world_without_worker
    world.post(world.channel_message("create Falls prevention | Sharing what works"))
    dying = world.new_worker(kinds=dict.fromkeys(KINDS, DiesDelivering(world.runtime.adapter)))

    with pytest.raises(Died):
        dying.run_once()

    [row] = world.inbox()
    with Session(world.engine) as db:
        stored = inbox.results(db=db, inbox_id=row.id or 0)
    assert row.status == InboxStatus.WORKING and stored != []  # the core committed, with its steps
    [made] = world.team.channels.values()
    [community] = communities(world)
    assert community.channel_id == made["id"]
    [welcome] = world.posted_in(made["id"])  # the core's own post, made (and journaled) before it committed
    assert "Created **Falls prevention**" not in world.replies_since(0)

    world.clock.advance(LEASE + dt.timedelta(seconds=1))  # the dead worker's lease runs out
    assert world.new_worker().drain() == 1

    assert world.replies_since(0).count("Created **Falls prevention**") == 1
    assert world.team.channels == {made["id"]: made}
    assert [c.id for c in communities(world)] == [community.id]
    assert world.posted_in(made["id"]) == [welcome]
    [row] = world.inbox()
    assert (row.status, row.attempts) == ("done", 2)


def test_a_reply_the_connector_cannot_take_now_is_sent_on_a_later_try_once(world: TeamsWorld) -> None:
    world.cloud.connector.fail_next(503, times=4)  # every try of the Connector client's own retries

    assert world.say("help") == ""

    [row] = world.inbox()
    assert (row.status, row.last_error) == ("pending", "notdelivered:serviceerror")
    world.clock.advance(dt.timedelta(minutes=1))
    world.settle()
    [reply] = world.sent()
    assert "/cop create" in text_of(reply)
    assert [r.status for r in world.inbox()] == ["done"]


def test_a_reply_the_connector_refuses_for_good_is_skipped_not_retried(world: TeamsWorld) -> None:
    world.cloud.connector.fail_next(403, code="BotNotInConversationRoster")

    assert world.say("help") == ""

    [row] = world.inbox()
    assert (row.status, row.attempts) == ("done", 1)


def test_one_persons_messages_run_in_the_order_they_arrived(world_without_worker: TeamsWorld) -> None:
    world = world_without_worker
    world.post(world.personal_message("create Falls prevention"))
    world.post(world.personal_message("list"))

    with running(world.new_worker(threads=4)):  # threads enough to run both at once, were they allowed to
        world.settle()

    answers = [text_of(body) for body in world.received(world.alice)]
    assert "Created **Falls prevention**" in answers[0]
    assert "Communities (1)" in answers[-1]


# --- dialog submissions run on the request thread ------------------------------------------------------------------


def story_submit(world: TeamsWorld) -> tuple[dict[str, Any], dict[str, str], Community]:
    community = falls(world)
    form = story_dialog(world)
    return form, typed_story(community, situation=FIXED_SITUATION), community


def test_a_story_saved_twice_is_stored_and_posted_once(world: TeamsWorld) -> None:
    form, typed, community = story_submit(world)
    before = len(world.cloud.connector.calls)

    first = submit(world, form, typed)
    second = submit(world, form, typed)  # a double click on Save: its own invoke, the same values

    assert "Insulin double-checks at night" in text_of(first)
    assert "already saved" in text_of(second)
    assert len(stories(world)) == 1
    assert len(world.posted_in(community.channel_id or "", since=before)) == 1
    [row] = [r for r in world.inbox() if r.kind == "teams.submit"]
    assert row.status == "done"


def test_a_submission_whose_request_died_after_saving_is_finished_by_a_worker_once(
    world: TeamsWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    form, typed, community = story_submit(world)
    before = len(world.cloud.connector.calls)
    value = {"data": {**form["actions"][0]["data"], **typed}, "context": {"theme": "default"}}
    invoke = world.invoke("20191020021910141-request-integrationBot.json", value)

    def dies(self: object, step: Step, run: Run) -> None:
        raise Died

    monkeypatch.setattr("bot.teams.inbox._Answer.deliver", dies)
    with pytest.raises(Died):  # the request thread stops after the core's commit, before it answers
        world.runtime.adapter.handle(f"Bearer {world.token(invoke)}", invoke)
    monkeypatch.undo()
    [story] = stories(world)
    assert len(world.posted_in(community.channel_id or "", since=before)) == 1

    # Bot Framework retries the invoke: the row is there, so nothing is saved again.
    retried = world.post(invoke, settle=False)
    assert "already saved" in text_of(retried.json())
    # The lease runs out; the worker delivers what the request could not: the answer, in Alice's 1:1 chat.
    world.clock.advance(LEASE + dt.timedelta(seconds=1))
    world.settle()

    assert [s.id for s in stories(world)] == [story.id]
    assert len(world.posted_in(community.channel_id or "", since=before)) == 1
    assert "Insulin double-checks at night" in text_of(world.received(world.alice, since=before))
    [row] = [r for r in world.inbox() if r.kind == "teams.submit"]
    assert (row.status, row.attempts) == ("done", 2)
