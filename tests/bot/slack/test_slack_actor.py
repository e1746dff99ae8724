"""The actor is the signed one: each Slack payload kind names its person and workspace in its own documented fields,
and a top-level `user_id` / `team_id` added to an interactivity payload changes nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from slack_bolt import App, BoltRequest, BoltResponse
from sqlalchemy import Engine
from sqlmodel import Session, select

from bot.slack.app import SHORTCUT_SAVE_AS_STORY, actor_from
from storage.models import Community, Member
from tests.fakes import slack_signing as signing
from tests.fakes.slack_api import TEAM_ID, FakeSlack

ALICE = {"id": "U0ALICE", "username": "alice", "name": "alice", "team_id": TEAM_ID}
BOB = {"id": "U0BOB", "username": "bob", "name": "bob", "team_id": TEAM_ID}
MALLORY = "U0MALLORY"  # only ever in a field Slack does not send for the payload's kind
OTHER_TEAM = "T0ELSEWHERE"
FORGED = {"user_id": MALLORY, "team_id": OTHER_TEAM}


def dispatch(app: App, request: signing.SignedRequest) -> BoltResponse:
    return app.dispatch(BoltRequest(body=request.body, headers=request.headers))


def command(app: App, fake: FakeSlack, text: str, *, user: str) -> str:
    before = len(fake.responses)
    request = signing.signed_slash_command(text, user_id=user, response_url=fake.response_url(f"cmd{before}"))
    assert dispatch(app, request).status == 200
    return str(fake.wait_for_responses(before + 1)[before]["text"])


def press(app: App, fake: FakeSlack, action_id: str, value: str, *, user: dict[str, str], **top: str) -> str:
    """A signed button press by `user`, with extra top-level fields; copbot's private answer to it."""
    before = len(fake.responses)
    payload = signing.interactive(
        "block_actions",
        actions=[{"action_id": action_id, "block_id": "b", "type": "button", "value": value, "action_ts": "1"}],
        user=user,
        response_url=fake.response_url(f"act{before}"),
    )
    payload.update(top)
    assert dispatch(app, signing.signed_interactive(payload)).status == 200
    return str(fake.wait_for_responses(before + 1)[before]["text"])


def members(engine: Engine) -> dict[str, Member]:
    with Session(engine) as db:
        return {m.user_id: m for m in db.exec(select(Member))}


def falls(engine: Engine) -> Community:
    with Session(engine) as db:
        return db.exec(select(Community).where(Community.slug == "falls-prevention")).one()


@pytest.fixture
def community(slack: tuple[App, FakeSlack], engine: Engine) -> Community:
    """Falls prevention: alice facilitates, bob is a member."""
    app, fake = slack
    command(app, fake, "create Falls prevention", user="U0ALICE")
    command(app, fake, "join falls-prevention", user="U0BOB")
    return falls(engine)


# --- each interactivity kind, from Slack's recorded payloads ------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(signing.INTERACTIVE_TEMPLATES))
def test_every_interactive_kind_takes_the_person_from_user_id_and_the_workspace_from_team_id(kind: str) -> None:
    payload = signing.interactive(kind, user=BOB, **FORGED)

    actor = actor_from(payload)

    assert (actor.user_id, actor.workspace_id, actor.display_name) == ("U0BOB", TEAM_ID, "bob")


@pytest.mark.parametrize("kind", sorted(signing.INTERACTIVE_TEMPLATES))
def test_an_org_wide_install_without_a_team_takes_the_users_workspace(kind: str) -> None:
    payload = signing.interactive(kind, user=BOB, **FORGED)
    payload["team"] = None  # Slack sends `team: null` in interactivity payloads of org-wide installs

    assert actor_from(payload).workspace_id == TEAM_ID


def test_an_interactive_payload_without_a_user_object_has_no_actor_even_with_a_top_level_user_id() -> None:
    payload = signing.interactive("block_actions", **FORGED)
    payload["user"] = "U0ALICE"  # not the object Slack sends

    actor = actor_from(payload)

    assert (actor.user_id, actor.workspace_id) == ("", TEAM_ID)


def test_events_take_the_person_from_the_event_and_the_workspace_from_the_envelope() -> None:
    body = signing.event_callback("app_home_opened", user="U0ALICE", tab="home")
    body["user"] = {"id": MALLORY, "team_id": OTHER_TEAM}
    body["user_id"] = MALLORY

    actor = actor_from(body, user_id=body["event"]["user"])

    assert (actor.user_id, actor.workspace_id) == ("U0ALICE", TEAM_ID)


def test_slash_commands_take_their_flat_fields() -> None:
    fields: dict[str, Any] = signing.slash_command_fields("list", user_id="U0BOB")

    actor = actor_from({**fields, "user": {"id": MALLORY}, "team": {"id": OTHER_TEAM}})

    assert (actor.user_id, actor.workspace_id, actor.display_name) == ("U0BOB", TEAM_ID, "bob")


# --- end to end: what ran, and as whom --------------------------------------------------------------------------


def test_a_member_cannot_archive_by_adding_a_facilitators_user_id(
    slack: tuple[App, FakeSlack], engine: Engine, community: Community
) -> None:
    app, fake = slack

    reply = press(app, fake, "community.archive", str(community.id), user=BOB, user_id="U0ALICE")

    assert "Only facilitators of *Falls prevention* can do that" in reply
    assert falls(engine).archived_at is None
    assert fake.calls_to("conversations.archive") == []


def test_a_facilitators_press_runs_as_them_whatever_top_level_fields_say(
    slack: tuple[App, FakeSlack], engine: Engine, community: Community
) -> None:
    app, fake = slack

    reply = press(app, fake, "community.archive", str(community.id), user=ALICE, user_id="U0BOB", team_id=OTHER_TEAM)

    assert "Archived *Falls prevention*" in reply
    assert falls(engine).archived_at is not None
    assert MALLORY not in members(engine) and all(m.workspace_id == TEAM_ID for m in members(engine).values())


def test_a_form_is_saved_for_the_person_who_submitted_it(slack: tuple[App, FakeSlack], engine: Engine) -> None:
    app, fake = slack
    button = {"action_id": "profile.open", "block_id": "b", "type": "button", "value": "-", "action_ts": "1"}
    dispatch(app, signing.signed_interactive(signing.interactive("block_actions", actions=[button], user=BOB)))
    [opened] = fake.wait_for("views.open")
    view = json.loads(opened["view"]) if isinstance(opened["view"], str) else opened["view"]
    state = signing.view_state(
        {"profession": {"profession": "Pharmacist"}, "organisation": {"organisation": ""}, "timezone": {"timezone": ""}}
    )
    payload = signing.interactive("view_submission", view={**view, "id": "V1", "state": state}, user=BOB)
    payload.update(user_id="U0ALICE", team_id=OTHER_TEAM)

    assert dispatch(app, signing.signed_interactive(payload)).status == 200

    [saved] = [c for c in fake.wait_for("chat.postMessage") if "Pharmacist" in str(c)]
    assert saved["channel"] == "U0BOB"
    people = members(engine)
    assert people["U0BOB"].profession == "Pharmacist" and people["U0BOB"].workspace_id == TEAM_ID
    assert "U0ALICE" not in people or people["U0ALICE"].profession is None


def test_the_message_shortcut_runs_as_the_person_who_chose_it(
    slack: tuple[App, FakeSlack], engine: Engine, community: Community
) -> None:
    app, fake = slack
    posted = fake.add_message(community.channel_id or "", "We tried a huddle at handover", user="U0CAROL")
    payload = signing.interactive(
        "message_action",
        callback_id=SHORTCUT_SAVE_AS_STORY,
        user=BOB,
        channel={"id": community.channel_id, "name": "cop-falls-prevention"},
        message={"type": "message", "text": posted.text, "user": "U0CAROL", "ts": posted.ts},
        **FORGED,
    )

    assert dispatch(app, signing.signed_interactive(payload)).status == 200

    fake.wait_for("views.open")
    people = members(engine)
    assert "U0BOB" in people and MALLORY not in people
    assert {m.workspace_id for m in people.values()} == {TEAM_ID}


def test_an_event_with_a_top_level_user_runs_as_the_events_user(slack: tuple[App, FakeSlack], engine: Engine) -> None:
    app, fake = slack
    body = signing.event_callback("app_home_opened", user="U0ALICE", tab="home")
    body.update(user={"id": MALLORY}, user_id=MALLORY)

    assert dispatch(app, signing.signed_event(body)).status == 200

    [published] = fake.wait_for("views.publish")
    assert published["user_id"] == "U0ALICE"
    assert MALLORY not in members(engine)
