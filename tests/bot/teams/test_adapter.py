"""Every community feature over `POST /api/messages`, as Teams would drive it, against the loopback fakes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlmodel import Session, select

from bot.teams import files
from bot.teams.cards import DIALOG_KEY
from handlers.errors import PlatformError
from storage import repository as repo
from storage import teams as refs
from storage.models import Community
from storage.rhythm import Reflection
from storage.stories import Story
from tests.bot.teams.conftest import (
    FETCH_TASK,
    MEMBER_ADDED,
    MEMBER_REMOVED,
    SUBMIT_ACTION,
    TASK_FETCH,
    TASK_SUBMIT,
    TeamsWorld,
    card_errors,
    cards_in,
    save_as_story,
    text_of,
)
from tests.reference import reference_path


def community(world: TeamsWorld, slug: str) -> Community:
    with Session(world.engine) as db:
        found = db.exec(select(Community).where(Community.slug == slug)).one()
    return found


def test_create_in_a_channel_makes_a_graph_channel_welcomes_there_and_answers_privately(world: TeamsWorld) -> None:
    before = len(world.cloud.connector.calls)

    world.post(world.channel_message("create Falls prevention | Sharing what works on our wards"))

    [channel] = world.team.channels.values()
    assert channel["displayName"] == "cop-falls-prevention"
    assert channel["description"] == "Sharing what works on our wards"
    # The welcome starts a thread in the new channel (CreateConversation with the channel, as Teams wants).
    [welcome] = world.posted_in(channel["id"], since=before)
    assert "Falls prevention" in text_of(welcome)
    # Private reply: Teams has no ephemeral messages, so it goes to Alice's 1:1 chat with copbot.
    [opened] = world.opened_chats()
    assert opened["members"] == [{"id": world.alice.bot_id}]
    assert opened["tenantId"] == world.cloud.tenant_id
    private = world.replies_since(before)
    assert "Created **Falls prevention**" in private
    assert "**cop-falls-prevention**" in private  # <#channel> rendered with its name
    assert "open to everyone in the team" in private
    assert not world.sent("Conversations_ReplyToActivity")  # nothing public in the thread
    assert community(world, "falls-prevention").channel_id == channel["id"]


def test_a_name_taken_in_teams_gets_a_suffix(world: TeamsWorld) -> None:
    world.team.channels["19:x@thread.tacv2"] = {"id": "19:x@thread.tacv2", "displayName": "cop-falls-prevention"}

    reply = world.say("create Falls prevention", channel=True)

    assert "cop-falls-prevention-2" in reply
    assert community(world, "falls-prevention").channel_name == "cop-falls-prevention-2"


def test_the_foundation_commands_from_the_personal_chat(world: TeamsWorld) -> None:
    world.post(world.installed_in_team())  # the bot learns the team's address
    assert "Created **Falls prevention**" in world.say("create Falls prevention | Sharing what works")

    joined = world.say("join falls-prevention", person=world.bob)
    assert "You're now a member" in joined
    assert "open to everyone in the team" in joined
    listing = world.say("/cop list")
    assert "Falls prevention" in listing
    assert "2 members" in listing
    profile = world.say('profile profession=Physiotherapist organisation="Example NHS Trust"', person=world.bob)
    assert "Physiotherapist" in profile
    assert "/cop create" in world.say("help")
    left = world.say("leave falls-prevention", person=world.bob)
    assert "You've left" in left
    assert "can't take one person out" in left
    # Replies in a 1:1 chat go in place: no new conversation was needed for them.
    assert world.opened_chats() == []
    chats = {c.params["conversationId"] for c in world.cloud.connector.activities("Conversations_SendToConversation")}
    assert {world.personal_conversation(world.alice), world.personal_conversation(world.bob)} <= chats


def test_facilitator_add_by_mention_dms_the_new_facilitator(world: TeamsWorld) -> None:
    world.say("create Falls prevention", channel=True)
    before = len(world.cloud.connector.calls)

    reply = world.say(f"facilitator add @{world.bob.name} in:falls-prevention", channel=True, mentions=(world.bob,))

    assert f"**{world.bob.name}** is now a facilitator" in reply or f"<at>{world.bob.name}</at> is now" in reply
    created = world.opened_chats(since=before)
    assert {"id": world.bob.bot_id} in [m for body in created for m in body["members"]]
    assert "made you a facilitator" in world.replies_since(before)
    with Session(world.engine) as db:
        row = repo.get_member(db=db, platform="teams", workspace_id=world.cloud.tenant_id, user_id=world.bob.aad)
        assert row is not None
        facilitators = repo.facilitators(db=db, community=community(world, "falls-prevention"))
    assert world.bob.aad in {m.user_id for m in facilitators}


def test_archive_asks_then_the_button_archives_with_a_closing_note(world: TeamsWorld) -> None:
    world.say("create Falls prevention", channel=True)
    falls = community(world, "falls-prevention")

    asked = world.say("archive falls-prevention")
    assert "Archive **Falls prevention**?" in asked
    [confirm_card] = [c for body in world.sent()[-1:] for c in cards_in(body)]
    [button] = confirm_card["actions"]
    assert button["data"] == {"action_id": "community.archive", "value": str(falls.id)}
    assert button["style"] == "destructive"

    before = len(world.cloud.connector.calls)
    assert world.post(world.button(button["data"])).status_code == 200

    assert falls.channel_id is not None
    assert any("archived" in text_of(a) for a in world.posted_in(falls.channel_id, since=before))
    done = world.replies_since(before)
    assert "Archived **Falls prevention**" in done
    assert "can't archive a standard channel" in done
    assert community(world, "falls-prevention").archived_at is not None


def test_profile_opens_a_dialog_and_saves_what_was_submitted(world: TeamsWorld) -> None:
    world.say("profile")
    [opener] = cards_in(world.sent()[-1])
    [button] = opener["actions"]
    assert button["data"]["msteams"] == {"type": "task/fetch"}

    fetched = world.post(world.invoke(TASK_FETCH, {"data": button["data"], "context": {"theme": "default"}}))

    assert fetched.status_code == 200
    dialog = fetched.json()["task"]
    assert dialog["type"] == "continue"
    [form] = cards_in(dialog)
    assert card_errors(form) == []
    assert [i["id"] for i in form["body"] if i["type"].startswith("Input.")] == [
        "profession",
        "organisation",
        "timezone",
    ]
    submit_data = form["actions"][0]["data"]

    values = {**submit_data, "profession": "Pharmacist", "organisation": "Example NHS Trust", "timezone": ""}
    submitted = world.post(world.invoke(TASK_SUBMIT, {"data": values, "context": {"theme": "default"}}))

    assert submitted.status_code == 200
    [saved] = cards_in(submitted.json())
    assert card_errors(saved) == []
    assert "Pharmacist" in text_of(saved)
    with Session(world.engine) as db:
        alice = repo.get_member(db=db, platform="teams", workspace_id=world.cloud.tenant_id, user_id=world.alice.aad)
    assert alice is not None
    assert (alice.profession, alice.organisation) == ("Pharmacist", "Example NHS Trust")


def test_a_bad_time_zone_in_the_dialog_is_answered_in_the_dialog(world: TeamsWorld) -> None:
    values = {"copbot_form": "profile", "copbot_context": "", "timezone": "Mars/Olympus"}

    answer = world.post(world.invoke(TASK_SUBMIT, {"data": values})).json()

    assert "isn't a time zone I know" in text_of(answer)


def test_save_as_a_story_opens_the_prefilled_form_and_waits_for_the_author(world: TeamsWorld) -> None:
    world.say("create Falls prevention", channel=True)
    falls = community(world, "falls-prevention")
    assert falls.channel_id is not None
    value = save_as_story(world.bob, "<p>We double-check insulin doses with pharmacy at 10&nbsp;am</p>")

    response = world.post(world.in_channel(world.invoke(FETCH_TASK, value), falls.channel_id))

    assert response.status_code == 200
    [form] = cards_in(response.json()["task"])
    assert card_errors(form) == []
    inputs = {i["id"]: i.get("value", "") for i in form["body"] if i["type"].startswith("Input.")}
    assert inputs["action"] == "We double-check insulin doses with pharmacy at 10 am"
    # Teams submits a dialog a message action opened as composeExtension/submitAction (not task/submit), with the
    # card's inputs merged into the submit button's data as `value.data`.
    submit = {**form["actions"][0]["data"], **inputs, "consent_scope": "community"}
    submitted = world.post(world.in_channel(world.invoke(SUBMIT_ACTION, {**value, "data": submit}), falls.channel_id))
    assert submitted.status_code == 200
    assert "asked" in text_of(submitted.json())  # the saver hears, in the dialog, that the author was asked
    with Session(world.engine) as db:
        [story] = db.exec(select(Story)).all()
    assert (story.status, story.source) == ("awaiting_author", "shortcut")
    asked = [a for a in world.sent() if "story.approve" in json.dumps(a)]
    assert len(asked) == 1  # bob, the author, is asked in his 1:1 chat; nothing is published without him


def test_a_reply_in_the_1_to_1_chat_to_a_dm_prompt_becomes_a_reflection(world: TeamsWorld) -> None:
    world.say("create Falls prevention", channel=True)
    falls = community(world, "falls-prevention")
    world.say("prompt schedule monday 10:00 dm in:falls-prevention", channel=True)
    world.say("prompt now in:falls-prevention", channel=True)
    assert world.runtime.container.run_due_work()["dispatch"] == 1
    assert any("Reflective prompt" in json.dumps(a) for a in world.sent())

    world.say("Our safety huddle caught a deteriorating patient early")

    with Session(world.engine) as db:
        [kept] = db.exec(select(Reflection)).all()
    assert (kept.text, kept.community_id) == ("Our safety huddle caught a deteriorating patient early", falls.id)
    assert "kept as a reflection" in json.dumps(world.sent()[-1])
    world.say("lsit")  # too short to be a reflection, and not a command: the usual suggestion
    assert "Did you mean" in json.dumps(world.sent()[-1])


def test_a_message_action_that_is_not_copbots_is_ignored(world: TeamsWorld) -> None:
    response = world.post(world.invoke(FETCH_TASK, {"commandId": "somethingElse", "messagePayload": {"id": "1"}}))
    assert response.status_code == 200
    assert response.json() == {}


def test_conversation_updates_store_references_and_sync_membership(world: TeamsWorld) -> None:
    world.say("create Falls prevention", channel=True)
    falls = community(world, "falls-prevention")
    assert falls.channel_id is not None
    carol = world.people[2]

    # Someone appears in a community channel: they become a member and get a welcome in their 1:1 chat.
    before = len(world.cloud.connector.calls)
    assert world.post(world.member_event(MEMBER_ADDED, carol, channel_id=falls.channel_id)).status_code == 200
    assert "You're now a member" in world.replies_since(before)
    with Session(world.engine) as db:
        assert len(repo.members_of(db=db, community=falls)) == 2
        stored = refs.user_by_aad(db=db, tenant_id=world.cloud.tenant_id, aad_object_id=carol.aad)
        team = refs.team_conversation(db=db, team_group_id=world.team.team_id)
    assert stored is not None
    assert stored.bot_user_id == carol.bot_id
    assert stored.personal_conversation_id  # the welcome opened their 1:1 chat, kept for proactive messages
    assert team is not None
    assert team.service_url == world.cloud.connector.service_url

    # They leave the team: every community channel in it is gone for them.
    removed = world.member_event(MEMBER_REMOVED, carol, key="membersRemoved")
    assert world.post(removed).status_code == 200
    with Session(world.engine) as db:
        assert len(repo.members_of(db=db, community=falls)) == 1


def test_a_retried_activity_is_handled_once(world: TeamsWorld) -> None:
    activity = world.channel_message("create Falls prevention")

    world.post(activity)
    world.post(activity)

    assert len(world.team.channels) == 1


def test_a_reaction_is_acknowledged_and_changes_nothing(world: TeamsWorld) -> None:
    # Teams tells a bot only about reactions to the bot's own messages, so a reaction can't offer someone's message
    # as a story (the "Save as a story" message action does that); it is acknowledged and ignored.
    activity = json.loads(reference_path("teams-docs-examples", "messageReaction.reactionsAdded.json").read_text())
    activity = world.in_channel(world._address(activity, person=world.alice))
    before = len(world.cloud.connector.calls)

    assert world.post(activity).status_code == 200

    assert world.cloud.connector.calls[before:] == []
    with Session(world.engine) as db:
        assert db.exec(select(Story)).all() == []


def test_the_personal_install_says_hello(world: TeamsWorld) -> None:
    example = reference_path("teams-docs-examples", "conversationUpdate.membersAdded.personal-chat.placeholders.json")
    activity = json.loads(example.read_text())
    activity = world._address(activity, person=world.alice)
    activity["membersAdded"] = [{"id": world.bot_id}, world.alice.account()]
    activity["conversation"] = {"conversationType": "personal", "id": world.personal_conversation(world.alice)}
    before = len(world.cloud.connector.calls)

    assert world.post(activity).status_code == 200

    assert "copbot helps Patient Safety Communities of Practice" in world.replies_since(before)


def test_a_form_button_on_a_welcome_opens_the_profile_dialog(world: TeamsWorld) -> None:
    data: dict[str, Any] = {"msteams": {"type": "task/fetch"}, DIALOG_KEY: {"action_id": "profile.open", "value": ""}}

    dialog = world.post(world.invoke(TASK_FETCH, {"data": data})).json()

    [form] = cards_in(dialog)
    assert dialog["task"]["value"]["title"] == "Your profile"
    assert card_errors(form) == []


def test_files_too_big_or_empty_are_refused_before_anything_is_sent(world: TeamsWorld) -> None:
    world.post(world.personal_message("help"))  # Alice's chat is known
    before = len(world.cloud.connector.calls)

    for content, code in ((b"", "file_empty"), (b"x" * (files.MAX_BYTES + 1), "file_too_big")):
        with pytest.raises(PlatformError) as refused:
            world.runtime.platform.upload_file(user_id=world.alice.aad, filename="x.csv", content=content, title="x")
        assert refused.value.code == code
    assert world.cloud.connector.calls[before:] == []
