"""Stories on Slack end to end: the modal, the message shortcut, the story reaction with the author's consent, and
exports uploaded to the facilitator's DM — signed requests in, the fake Slack Web API out."""

from __future__ import annotations

import json
from typing import Any

import pytest
from slack_bolt import App
from sqlalchemy import Engine
from sqlmodel import Session, select

from bot.slack.app import SHORTCUT_SAVE_AS_STORY
from storage.stories import Story
from tests.bot.slack.test_slack_app import command, dispatch
from tests.fakes import slack_signing as signing
from tests.fakes.slack_api import TEAM_ID, FakeSlack
from tests.seen import slack_pings, slack_seen

BOB = {"id": "U0BOB", "username": "bob", "name": "bob", "team_id": TEAM_ID}


@pytest.fixture
def channel(slack: tuple[App, FakeSlack]) -> str:
    """Falls prevention: alice facilitates, bob is a member."""
    app, fake = slack
    command(app, fake, "create Falls prevention | Sharing what works")
    command(app, fake, "join falls-prevention", user="U0BOB")
    found = fake.channel_named("cop-falls-prevention")
    assert found is not None
    return found.id


def as_dict(value: Any) -> dict[str, Any]:
    return json.loads(value) if isinstance(value, str) else dict(value)


def blocks_text(call: dict[str, Any]) -> str:
    return json.dumps(call.get("blocks")) + str(call.get("text"))


def submit(app: App, view: dict[str, Any], values: dict[str, Any], *, user: dict[str, str] | None = None) -> None:
    """Submit a modal the app opened: plain strings for text inputs, dicts for selects."""
    state = signing.view_state({block: {block: value} for block, value in values.items()})
    payload = signing.interactive(
        "view_submission", view={**view, "id": "V1", "state": state}, **({"user": user} if user else {})
    )
    assert dispatch(app, signing.signed_interactive(payload)).status == 200


def picked(*user_ids: str) -> dict[str, Any]:
    """A multi_users_select's state in a view_submission, as Slack sends it (slack_sdk `ViewStateValue`)."""
    return {"type": "multi_users_select", "selected_users": list(user_ids)}


def story_state(view: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """The modal's own initial values (as Slack would submit them untouched), with some fields changed."""
    values: dict[str, Any] = {}
    for block in view["blocks"]:
        element = block["element"]
        name = block["block_id"]
        if element["type"] == "plain_text_input":
            values[name] = element.get("initial_value", "")
        elif element["type"] == "static_select":
            values[name] = {"type": "static_select", "selected_option": element.get("initial_option")}
        elif element["type"] == "multi_users_select":
            values[name] = picked(*element.get("initial_users", []))
        else:
            values[name] = {"type": element["type"], "selected_options": element.get("initial_options", [])}
    values.update(changes)
    return values


def press(app: App, fake: FakeSlack, action_id: str, value: str, *, user: dict[str, str]) -> None:
    """Press a button and wait for copbot's answer to it, which comes after its work is committed."""
    before = len(fake.responses)
    payload = signing.interactive(
        "block_actions",
        actions=[{"action_id": action_id, "block_id": "b", "type": "button", "value": value, "action_ts": "1"}],
        user=user,
        response_url=fake.response_url("act"),
    )
    assert dispatch(app, signing.signed_interactive(payload)).status == 200
    fake.wait_for_responses(before + 1)


def react(
    app: App, *, channel: str, ts: str, user: str = "U0ALICE", reaction: str = "bulb", event_id: str | None = None,
    retry_num: int | None = None,
) -> None:  # fmt: skip
    body = signing.event_callback(
        "reaction_added", user=user, reaction=reaction, item={"type": "message", "channel": channel, "ts": ts},
        item_user="U0BOB", event_id=event_id,
    )  # fmt: skip
    assert dispatch(app, signing.signed_event(body, retry_num=retry_num)).status == 200


def stories(engine: Engine) -> list[Story]:
    with Session(engine) as db:
        return list(db.exec(select(Story)))


def test_story_command_opens_a_modal_and_the_saved_story_is_posted_in_the_channel(
    slack: tuple[App, FakeSlack], channel: str, engine: Engine
) -> None:
    app, fake = slack
    dispatch(app, signing.signed_slash_command("story", channel_id=channel, response_url=fake.response_url()))
    [opened] = fake.wait_for("views.open")
    view = as_dict(opened["view"])
    assert view["callback_id"] == "story"
    community = view["blocks"][0]
    assert community["element"]["initial_option"]["text"]["text"] == "Falls prevention"  # preselected here
    assert all(b["element"].get("max_length", 0) <= 3000 for b in view["blocks"])
    values = story_state(
        view,
        title="Safety huddles before every shift",
        action="Five minutes at 07:45 to name who is at risk. Thanks <@U0CAROL>!",
        recognised=picked("U0BOB"),
        recognised_group="The night team on ward 7",
        themes={"type": "multi_static_select", "selected_options": [{"value": "falls"}, {"value": "teamwork"}]},
        show_name={"type": "checkboxes", "selected_options": [{"value": "yes"}]},
    )
    submit(app, view, values)
    posts = fake.wait_for("chat.postMessage", count=4)  # the welcome, the card, the thank-you, the author's reply
    card = next(p for p in posts if p["channel"] == channel and "Safety huddles" in blocks_text(p))
    assert "header" in blocks_text(card) and "Shared by" in blocks_text(card) and "<@U0ALICE>" in blocks_text(card)
    assert "Recognising\n@U0BOB, The night team on ward 7" in slack_seen(card)  # the person picked, then the team
    assert any(p["channel"] == "U0BOB" and "recognised you" in str(p["text"]) for p in posts)
    [story] = stories(engine)
    assert (story.status, story.theme_ids, story.show_name) == ("published", ["falls", "teamwork"], True)
    assert (story.recognised_ids, story.recognised_group) == (["U0BOB"], "The night team on ward 7")


def test_a_story_reaction_asks_the_author_and_approval_publishes(
    slack: tuple[App, FakeSlack], channel: str, engine: Engine
) -> None:
    app, fake = slack
    message = fake.add_message(channel, "Great SBAR handover from &lt;the night team&gt; today", user="U0BOB")
    react(app, channel=channel, ts=message.ts)
    [history] = fake.wait_for("conversations.history")
    assert (history["channel"], history["latest"], str(history["inclusive"]), str(history["limit"])) == (
        channel, message.ts, "1", "1",
    )  # fmt: skip
    dms = [c for c in fake.wait_for("chat.postMessage", count=3) if c["channel"] in ("U0BOB", "U0ALICE")]
    ask = next(c for c in dms if c["channel"] == "U0BOB")
    buttons = [e for b in as_dict({"b": ask["blocks"]})["b"] if b["type"] == "actions" for e in b["elements"]]
    assert [b["action_id"] for b in buttons] == ["story.approve", "story.approve_named", "story.edit", "story.decline"]
    assert "<the night team>" in slack_seen(ask) and slack_pings(ask) == set()  # Slack's escapes undone, shown safely
    assert not any(c["channel"] == channel and "SBAR" in blocks_text(c) for c in fake.calls_to("chat.postMessage"))
    [story] = stories(engine)
    assert story.status == "awaiting_author" and story.source_link and message.ts.replace(".", "") in story.source_link
    press(app, fake, "story.approve", str(story.id), user=BOB)
    fake.wait_for("chat.postMessage", count=5)
    assert any(c["channel"] == channel and "SBAR" in blocks_text(c) for c in fake.calls_to("chat.postMessage"))
    assert stories(engine)[0].status == "published"


def test_retried_and_repeated_reactions_make_one_story_and_one_request(
    slack: tuple[App, FakeSlack], channel: str, engine: Engine
) -> None:
    app, fake = slack
    message = fake.add_message(channel, "Pharmacy now checks insulin with us", user="U0BOB")
    react(app, channel=channel, ts=message.ts, event_id="Ev0STORY1")
    react(app, channel=channel, ts=message.ts, event_id="Ev0STORY1", retry_num=1)  # Slack's retry
    fake.wait_for("chat.postMessage", count=3)
    # A second person's reaction comes after the first has been handled (two at once meet the unique constraint).
    react(app, channel=channel, ts=message.ts, user="U0CAROL")
    fake.wait_for("chat.postMessage", count=4)
    assert len(stories(engine)) == 1
    asks = [c for c in fake.calls_to("chat.postMessage") if c["channel"] == "U0BOB" and "story.approve" in str(c)]
    assert len(asks) == 1
    [second] = [c for c in fake.calls_to("chat.postMessage") if c["channel"] == "U0CAROL"]
    assert "already waiting for its author" in second["text"]


def test_a_reaction_on_a_thread_reply_reads_the_thread(
    slack: tuple[App, FakeSlack], channel: str, engine: Engine
) -> None:
    app, fake = slack
    root = fake.add_message(channel, "How do you do handovers?", user="U0ALICE")
    reply = fake.add_message(channel, "We use a printed SBAR sheet at the bedside", user="U0BOB", thread_ts=root.ts)
    react(app, channel=channel, ts=reply.ts)
    [replies] = fake.wait_for("conversations.replies")
    assert replies["ts"] == reply.ts
    fake.wait_for("chat.postMessage", count=3)
    [story] = stories(engine)
    assert story.action == "We use a printed SBAR sheet at the bedside" and story.source_message_id == reply.ts


def test_bot_messages_other_emoji_and_other_channels(
    slack: tuple[App, FakeSlack], channel: str, engine: Engine
) -> None:
    app, fake = slack
    welcome = next(m for m in fake.messages_in(channel) if m.bot_id)
    react(app, channel=channel, ts=welcome.ts)
    [refusal] = [c for c in fake.wait_for("chat.postMessage", count=2) if c["channel"] == "U0ALICE"]
    assert "from a bot" in refusal["text"]
    before = len(fake.calls)
    plain = fake.add_message(channel, "Nice", user="U0BOB")
    react(app, channel=channel, ts=plain.ts, reaction="thumbsup")
    assert len(fake.calls) == before  # no API call for other reactions
    general = fake.add_message("C0GENERAL", "A good idea in general", user="U0BOB")
    react(app, channel="C0GENERAL", ts=general.ts)
    notes = [c for c in fake.wait_for("chat.postMessage", count=3) if c["channel"] == "U0ALICE"]
    assert "only in a community's channel" in notes[-1]["text"]
    assert stories(engine) == []


def test_the_shortcut_prefills_the_modal_and_a_story_from_someone_else_waits(
    slack: tuple[App, FakeSlack], channel: str, engine: Engine
) -> None:
    app, fake = slack
    message = fake.add_message(channel, "Tip: bay tags for people at risk of falls. Thanks <@U0CAROL>", user="U0BOB")
    payload = signing.interactive(
        "message_action", callback_id=SHORTCUT_SAVE_AS_STORY, channel={"id": channel, "name": "cop-falls-prevention"},
        message={"type": "message", "text": message.text, "user": "U0BOB", "ts": message.ts},
        response_url=fake.response_url("sc"),
    )  # fmt: skip
    assert dispatch(app, signing.signed_interactive(payload)).status == 200
    [opened] = fake.wait_for("views.open")
    view = as_dict(opened["view"])
    initial = {b["block_id"]: b["element"].get("initial_value") for b in view["blocks"]}
    assert initial["title"] == "Tip: bay tags for people at risk of falls"
    [people] = [b["element"] for b in view["blocks"] if b["block_id"] == "recognised"]
    assert people["type"] == "multi_users_select" and people["initial_users"] == ["U0CAROL"]  # carol, pre-picked
    assert view["private_metadata"].startswith("story:")
    submit(app, view, story_state(view))  # as prefilled, carol still picked
    posts = fake.wait_for("chat.postMessage", count=3)
    assert any(p["channel"] == "U0BOB" and "story.approve" in str(p["blocks"]) for p in posts)
    [story] = stories(engine)
    assert (story.status, story.source, story.recognised_ids) == ("awaiting_author", "shortcut", ["U0CAROL"])


def test_a_story_with_an_nhs_number_is_refused_under_its_field(
    slack: tuple[App, FakeSlack], channel: str, engine: Engine
) -> None:
    app, fake = slack
    dispatch(app, signing.signed_slash_command("story", channel_id=channel, response_url=fake.response_url()))
    view = as_dict(fake.wait_for("views.open")[0]["view"])
    state = signing.view_state({block: {block: value} for block, value in story_state(
        view, title="Huddles", action="Patient 943 476 5919 was reviewed").items()})  # fmt: skip
    payload = signing.interactive("view_submission", view={**view, "id": "V1", "state": state})
    response = dispatch(app, signing.signed_interactive(payload))
    answer = json.loads(response.body)
    assert answer == {"response_action": "errors", "errors": {"action": answer["errors"]["action"]}}
    assert "looks like it contains an NHS number" in answer["errors"]["action"]
    assert "943" not in response.body and "943" not in json.dumps(fake.calls_to("chat.postMessage"))
    assert stories(engine) == []


def test_export_is_uploaded_to_the_facilitators_dm(slack: tuple[App, FakeSlack], channel: str, engine: Engine) -> None:
    app, fake = slack
    message = fake.add_message(channel, "Calm room for people in distress", user="U0ALICE")
    react(app, channel=channel, ts=message.ts)  # alice reacts to her own message: she confirms by DM
    fake.wait_for("chat.postMessage", count=3)
    alice = {"id": "U0ALICE", "username": "alice", "name": "alice", "team_id": TEAM_ID}
    press(app, fake, "story.approve", str(stories(engine)[0].id), user=alice)
    fake.wait_for("chat.postMessage", count=4)
    fake.wait_for_responses(3)  # create, join, and the approval's reply
    reply = command(app, fake, "export md", channel=channel)
    assert "I've sent you `stories-falls-prevention-" in reply and "1 story" in reply
    [opened] = fake.calls_to("conversations.open")
    assert opened["users"] == "U0ALICE"
    [upload] = fake.files.values()
    assert upload.completed and upload.channels == [fake.im_channel_for("U0ALICE")]
    assert upload.data is not None and b"Calm room for people in distress" in upload.data
    assert "only facilitators" in command(app, fake, "export csv", user="U0BOB", channel=channel).lower()
