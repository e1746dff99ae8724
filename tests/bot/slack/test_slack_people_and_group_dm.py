"""People pickers and group DMs on Slack (issue 12): the story form's "People to recognise" is Slack's people picker,
and an introduction is one group DM of the partners and copbot, with 1:1 DMs when Slack will not open one — signed
requests in, the fake Slack Web API out, every call checked against Slack's spec and the manifest's scopes."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from slack_bolt import App
from slack_sdk.models.blocks import Block
from sqlalchemy import Engine

from bot.dispatcher import Dispatcher
from bot.slack.platform import SlackPlatform, make_client
from handlers.errors import PlatformError
from handlers.ports import Message, Section
from tests.bot.slack.test_slack_app import command, dispatch
from tests.bot.slack.test_slack_consent import open_story_form, submit_view
from tests.bot.slack.test_slack_rhythm import command as rhythm_command
from tests.bot.slack.test_slack_rhythm import setup
from tests.bot.slack.test_slack_stories import as_dict, channel, picked, stories, story_state
from tests.fakes import slack_signing as signing
from tests.fakes.slack_api import BOT_TOKEN, BOT_USER_ID, FakeSlack
from tests.seen import slack_seen

__all__ = ["channel", "setup"]  # the shared fixtures

PEOPLE_LABEL = "People to recognise"
STARTER = "A conversation starter"


def people_block(view: dict[str, Any]) -> dict[str, Any]:
    [block] = [b for b in view["blocks"] if b.get("label", {}).get("text") == PEOPLE_LABEL]
    return dict(block)


def wait_for_stories(engine: Engine, count: int = 1) -> None:
    """The story is saved by the lazy listener after the acknowledgement."""
    deadline = time.monotonic() + 5
    while len(stories(engine)) < count and time.monotonic() < deadline:
        time.sleep(0.05)


# --- the people picker ---------------------------------------------------------------------------------------------


def test_the_story_form_asks_for_people_with_slacks_people_picker(slack: tuple[App, FakeSlack], channel: str) -> None:
    app, fake = slack
    view = open_story_form(app, fake, channel)
    block = people_block(view)
    assert block["block_id"] == "recognised" and block["optional"] is True
    element = block["element"]
    assert (element["type"], element["action_id"]) == ("multi_users_select", "recognised")
    assert "initial_users" not in element  # nobody is pre-chosen in a new story
    assert element["placeholder"]["type"] == "plain_text" and element["placeholder"]["text"]
    assert element["placeholder"]["text"] in slack_seen({"view": view})  # what the person reads in the empty picker
    # Slack's own Block Kit model knows every key (a key it does not know would be dropped here) and its limits.
    parsed = Block.parse(block)
    assert parsed is not None and parsed.to_dict() == block
    parsed.validate_json()


def test_choosing_two_people_stores_their_ids_and_thanks_each_privately(
    slack: tuple[App, FakeSlack], channel: str, engine: Engine
) -> None:
    app, fake = slack
    command(app, fake, "join falls-prevention", user="U0CAROL")
    view = open_story_form(app, fake, channel)
    values = story_state(
        view, title="Safety huddles before every shift", action="Five minutes at 07:45 to name who is at risk.",
        recognised=picked("U0ALICE", "U0CAROL"),
    )  # fmt: skip
    response = submit_view(app, view, values)
    assert response.status == 200 and not response.body  # valid: the modal closes
    fake.wait_for("chat.postMessage", count=5)  # the welcome, the card, two thank-yous, the author's confirmation
    wait_for_stories(engine)
    [story] = stories(engine)
    assert story.recognised_ids == ["U0ALICE", "U0CAROL"]
    posts = fake.calls_to("chat.postMessage")
    for person in ("U0ALICE", "U0CAROL"):
        thanks = [p for p in posts if p["channel"] == person and "recognised you" in slack_seen(p)]
        assert len(thanks) == 1, person
        assert "Safety huddles before every shift" in slack_seen(thanks[0])
    assert not any(p["channel"] == "U0BOB" and "recognised you" in slack_seen(p) for p in posts)  # the author
    [card] = [p for p in posts if p["channel"] == channel and "Safety huddles" in slack_seen(p)]
    assert "@U0ALICE" in slack_seen(card) and "@U0CAROL" in slack_seen(card)


def test_editing_a_story_shows_the_people_already_chosen(
    slack: tuple[App, FakeSlack], channel: str, engine: Engine
) -> None:
    app, fake = slack
    command(app, fake, "join falls-prevention", user="U0CAROL")
    view = open_story_form(app, fake, channel)
    submit_view(app, view, story_state(view, title="Huddles", action="We huddle.", recognised=picked("U0CAROL")))
    wait_for_stories(engine)
    [story] = stories(engine)
    dispatch(app, signing.signed_slash_command(f"story edit {story.id}", user_id="U0BOB", channel_id=channel,
                                               response_url=fake.response_url()))  # fmt: skip
    edit = as_dict(fake.wait_for("views.open", count=2)[-1]["view"])
    assert people_block(edit)["element"]["initial_users"] == ["U0CAROL"]


def test_a_wrong_pick_keeps_the_modal_open_with_the_error_under_the_picker(
    slack: tuple[App, FakeSlack], channel: str, engine: Engine
) -> None:
    app, fake = slack
    view = open_story_form(app, fake, channel)
    typed = "Ten minutes of careful typing about torch checks at night."
    values = story_state(view, title="Torch checks", action=typed, recognised=picked("U0ALICE", BOT_USER_ID))
    response = submit_view(app, view, values)
    answer = json.loads(response.body)
    assert answer["response_action"] == "errors"
    assert set(answer["errors"]) == {"recognised"}  # the picker's block id: Slack shows it under the picker
    assert answer["errors"]["recognised"]
    time.sleep(0.3)  # the lazy listener had its chance to (wrongly) save something
    assert stories(engine) == []
    fixed = {**values, "recognised": picked("U0ALICE")}
    assert not submit_view(app, view, fixed).body
    wait_for_stories(engine)
    [story] = stories(engine)
    assert (story.action, story.recognised_ids) == (typed, ["U0ALICE"])


# --- send_group_dm --------------------------------------------------------------------------------------------------


def platform(fake: FakeSlack) -> SlackPlatform:
    return SlackPlatform(make_client(token=BOT_TOKEN, base_url=fake.url))


def test_a_group_dm_opens_one_conversation_with_the_people_and_copbot(fake_slack: FakeSlack) -> None:
    message = Message(
        text="Meet each other", title="Introduction · Falls prevention",
        sections=(Section("*Meet <@U0ALICE> and <@U0BOB>* from Falls prevention."),),
    )  # fmt: skip
    ts = platform(fake_slack).send_group_dm(user_ids=["U0ALICE", "U0BOB", "U0ALICE"], message=message)
    [opened] = fake_slack.calls_to("conversations.open")
    assert opened["users"] == "U0ALICE,U0BOB"  # each person once
    [group] = [c for c in fake_slack.channels.values() if c.kind == "mpim"]
    assert set(group.members) == {BOT_USER_ID, "U0ALICE", "U0BOB"}
    [posted] = fake_slack.messages_in(group.id)
    assert posted.ts == ts
    [call] = [c for c in fake_slack.calls_to("chat.postMessage") if c["channel"] == group.id]
    assert slack_seen(call) == "Introduction · Falls prevention\nMeet @U0ALICE and @U0BOB from Falls prevention."
    assert len(fake_slack.calls_to("chat.postMessage")) == 1  # nobody got a 1:1 copy


def test_a_group_dm_of_one_is_their_dm(fake_slack: FakeSlack) -> None:
    platform(fake_slack).send_group_dm(user_ids=["U0BOB"], message=Message(text="Hello"))
    assert fake_slack.calls_to("conversations.open") == []
    [call] = fake_slack.calls_to("chat.postMessage")
    assert (call["channel"], slack_seen(call)) == ("U0BOB", "Hello")


def test_slack_refusing_the_group_dm_is_a_platform_error(fake_slack: FakeSlack) -> None:
    fake_slack.fail_next("conversations.open", error="user_not_found")
    with pytest.raises(PlatformError) as raised:
        platform(fake_slack).send_group_dm(user_ids=["U0ALICE", "U0BOB"], message=Message(text="Hello"))
    assert (raised.value.code, raised.value.transient) == ("user_not_found", False)
    assert fake_slack.calls_to("chat.postMessage") == []


# --- introductions ------------------------------------------------------------------------------------------------

FOUR = [("U0ALICE", "Staff nurse", "North Trust"), ("U0BOB", "Pharmacist", "East Trust"),
        ("U0CAROL", "Physiotherapist", "West Trust"), ("U0DAN", "Midwife", "South Trust")]  # fmt: skip
PROFILE = {user: (profession, organisation) for user, profession, organisation in FOUR}


def intros_community(app: App, fake: FakeSlack) -> str:
    """Four members with profiles in Falls prevention (alice facilitates); returns the channel id."""
    fake.add_user("U0DAN", name="dan")
    rhythm_command(app, fake, "create Falls prevention")
    found = fake.channel_named("cop-falls-prevention")
    assert found is not None
    for user, profession, organisation in FOUR:
        if user != "U0ALICE":
            rhythm_command(app, fake, "join falls-prevention", user=user)
        rhythm_command(app, fake, f'profile profession="{profession}" organisation="{organisation}"', user=user)
    return found.id


def run_due(dispatcher: Dispatcher) -> None:
    """Send everything due now, including anything queued while sending (a fallback's DMs)."""
    for _ in range(5):
        if dispatcher.run() == 0:
            return


def intros_sent_to(fake: FakeSlack, destination: str) -> list[dict[str, Any]]:
    return [c for c in fake.calls_to("chat.postMessage") if c["channel"] == destination and STARTER in slack_seen(c)]


def assert_shows_profiles_and_starter(call: dict[str, Any], people: set[str]) -> None:
    assert call.get("blocks"), "an introduction is rich: Slack shows its blocks, not its text"
    seen = slack_seen(call)
    for person in people:
        assert f"@{person}" in seen
        assert all(part in seen for part in PROFILE[person]), person
    assert "?" in seen.split(STARTER, 1)[1]  # the starter is a question


def test_an_introduction_round_opens_one_group_dm_per_group(
    setup: tuple[App, Dispatcher], fake_slack: FakeSlack
) -> None:
    app, dispatcher = setup
    channel_id = intros_community(app, fake_slack)
    rhythm_command(app, fake_slack, "intros run", channel=channel_id)
    run_due(dispatcher)
    opened = [frozenset(c["users"].split(",")) for c in fake_slack.calls_to("conversations.open")]
    assert len(opened) == 2 and all(len(g) == 2 for g in opened)
    assert set().union(*opened) == set(PROFILE)  # everyone is in exactly one group
    groups = [c for c in fake_slack.channels.values() if c.kind == "mpim"]
    assert {frozenset(g.members) for g in groups} == {g | {BOT_USER_ID} for g in opened}
    for group in groups:
        [intro] = intros_sent_to(fake_slack, group.id)
        assert_shows_profiles_and_starter(intro, set(group.members) - {BOT_USER_ID})
    for person in PROFILE:  # no 1:1 introduction besides the group DM
        assert intros_sent_to(fake_slack, person) == []
        assert intros_sent_to(fake_slack, fake_slack.im_channel_for(person)) == []


@pytest.mark.parametrize("refusal", ["answered missing_scope", "scope not granted"])
def test_when_slack_will_not_open_a_group_dm_each_person_gets_their_own_introduction(
    setup: tuple[App, Dispatcher], fake_slack: FakeSlack, refusal: str
) -> None:
    app, dispatcher = setup
    channel_id = intros_community(app, fake_slack)
    if refusal == "answered missing_scope":
        # A workspace that installed copbot before it asked for mpim:write, until an admin reinstalls it.
        fake_slack.fail_next("conversations.open", error="missing_scope", times=2, needed="mpim:write",
                             provided="chat:write,im:write")  # fmt: skip
    else:
        assert fake_slack.scopes is not None
        fake_slack.scopes.discard("mpim:write")
    rhythm_command(app, fake_slack, "intros run", channel=channel_id)
    run_due(dispatcher)
    assert fake_slack.calls_to("conversations.open"), "copbot asked Slack for the group DM first"
    if refusal == "scope not granted":
        refused = fake_slack.take_violations()
        assert refused and {(v.method, v.kind) for v in refused} == {("conversations.open", "missing_scope")}
    assert [c for c in fake_slack.channels.values() if c.kind == "mpim"] == []
    partners: dict[str, set[str]] = {}
    for person in PROFILE:
        [intro] = intros_sent_to(fake_slack, person)
        named = {p for p in PROFILE if p != person and f"@{p}" in slack_seen(intro)}
        assert len(named) == 1, (person, named)
        partners[person] = named
        assert_shows_profiles_and_starter(intro, named | {person})
    assert all(person in partners[next(iter(named))] for person, named in partners.items())  # pairs, both ways
