"""Stories in the core: the form, capture from messages with the author's consent, the PII guard, publishing,
editing and withdrawing, and facilitator exports — driven like a conversation."""

from __future__ import annotations

import csv
import io
import logging
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from bot.slack.render import message_payload
from handlers.app import CopBot
from handlers.context import CoreConfig
from handlers.ports import Actor, Message, Reply
from handlers.stories import SourceMessage
from storage.engine import make_engine, migrate
from storage.models import AuditEvent
from storage.stories import Story, StoryStatus
from tests.conftest import Conversation, FixedClock, visible
from tests.fakes.recording import RecordingPlatform
from tests.seen import seen_slack, slack_pings

NHS_NUMBER = "943 476 5919"  # valid Modulus 11, synthetic (starts with 9)


def story_values(community: str = "", **changes: str) -> dict[str, str]:
    values = {
        "community": community,
        "title": "Safety huddles before every shift",
        "situation": "Our ward had several falls at night.",
        "action": "We hold a five-minute huddle at 07:45 and 19:45 to name who is at risk.",
        "why_it_works": "Everyone hears the same plan, including bank staff.",
        "impact": "Fewer falls and calmer handovers.",
        "recognised": "<@bob>",  # what the people picker submits
        "themes": "falls, teamwork",
        "consent_scope": "community",
        "show_name": "",
    }
    values.update(changes)
    return values


@pytest.fixture
def falls(convo: Conversation, platform: RecordingPlatform) -> str:
    """A community (alice facilitates, bob is a member); returns its channel id."""
    convo.say("/cop create Falls prevention | Sharing what works")
    convo.say("/cop join falls-prevention", user="bob")
    return next(iter(platform.channels))


def stories_in(engine: Engine) -> list[Story]:
    with Session(engine) as db:
        return list(db.exec(select(Story).order_by(Story.id)))  # type: ignore[arg-type]


def posts_to(platform: RecordingPlatform, channel: str) -> list[Message]:
    return [c["message"] for c in platform.called("post") if c["channel_id"] == channel]


def dms_to(platform: RecordingPlatform, user: str) -> list[Message]:
    return [c["message"] for c in platform.called("send_dm") if c["user_id"] == user]


def card_text(message: Message) -> str:
    return "\n".join([message.title or "", *(s.text for s in message.sections), *(f"{k}: {v}" for s in message.sections
                                                                                   for k, v in s.fields)])  # fmt: skip


def source(channel: str, text: str, *, author: str = "bob", message_id: str = "1700000000.000100") -> SourceMessage:
    return SourceMessage(
        channel_id=channel, message_id=message_id, author_user_id=author, text=text, link="https://chat/archives/x"
    )


def react(bot: CopBot, convo: Conversation, message: SourceMessage, *, user: str, emoji: str = "bulb") -> str:
    replies = bot.story_reaction(actor=convo.actor(user), message=message, emoji=emoji)
    return "\n".join(visible(r.message) for r in replies if r.message is not None)


# --- the form ---------------------------------------------------------------------------------------------------


def test_story_in_a_community_channel_opens_the_form_with_the_community_chosen(convo: Conversation, falls: str) -> None:
    convo.say("/cop story", channel=falls)
    [reply] = convo.last
    assert reply.form is not None and reply.form.form_id == "story"
    fields = {f.name: f for f in reply.form.fields}
    assert list(fields) == [
        "community", "title", "situation", "action", "why_it_works", "impact", "recognised", "recognised_group",
        "themes", "consent_scope", "show_name",
    ]  # fmt: skip
    assert fields["recognised"].kind == "users" and fields["recognised_group"].kind == "text"
    assert fields["community"].initial != "" and fields["community"].options[0][1] == "Falls prevention"
    assert fields["title"].required and fields["action"].required
    assert all(f.max_length == 3000 for n, f in fields.items() if n in ("situation", "action", "why_it_works"))
    assert {"handover", "teamwork", "falls"} <= {v for v, _ in fields["themes"].options}
    convo.say("/cop story")
    assert convo.last[0].form is not None and convo.last[0].form.fields[0].initial == ""  # a DM: not preselected


def test_a_saved_story_is_posted_as_a_card_and_people_recognised_are_thanked(
    convo: Conversation, platform: RecordingPlatform, falls: str, engine: Engine
) -> None:
    convo.say("/cop story", channel=falls)
    community_id = convo.last[0].form.fields[0].initial  # type: ignore[union-attr]
    reply = convo.submit("story", story_values(community_id))
    assert "Your story *Safety huddles before every shift* (#1) is shared in <#" in reply
    assert [b.action_id for b in convo.last[0].message.buttons] == ["story.edit", "story.withdraw"]  # type: ignore[union-attr]
    [card] = posts_to(platform, falls)[-1:]
    text = card_text(card)
    assert card.title == "Safety huddles before every shift"
    for part in (
        "*The situation*",
        "*What was done*",
        "*Why it works*",
        "*The difference it made*",
        "Themes: Falls, Teamwork",
    ):
        assert part in text
    assert "Shared by: a colleague" in text and "<@alice>" not in text  # the name only when chosen
    [thanks] = dms_to(platform, "bob")
    assert "A colleague recognised you" in visible(thanks) and "Safety huddles" in visible(thanks)
    [story] = stories_in(engine)
    assert (story.status, story.source, story.recognised_ids, story.theme_ids) == (
        "published", "form", ["bob"], ["falls", "teamwork"],
    )  # fmt: skip


def test_a_team_is_thanked_in_its_own_field_and_its_words_are_never_people(
    convo: Conversation, platform: RecordingPlatform, falls: str, engine: Engine
) -> None:
    # Typed into the people field, a team's name is refused as people (no DM to "users" `the`, `night`, …) …
    reply = convo.submit("story", story_values("falls-prevention", recognised="the night team on ward 7"))
    assert "*People to recognise*: `the` isn't someone I know" in reply and "Team or group to thank" in reply
    assert stories_in(engine) == [] and platform.called("send_dm") == []
    # … and named in its own field it is thanked on the card, next to the people chosen in the picker.
    convo.submit("story", story_values("falls-prevention", recognised_group="the night team on ward 7"))
    [story] = stories_in(engine)
    assert (story.recognised_ids, story.recognised_group) == (["bob"], "the night team on ward 7")
    assert "Recognising: <@bob>, the night team on ward 7" in card_text(posts_to(platform, falls)[-1])
    assert [d["user_id"] for d in platform.called("send_dm")] == ["bob"]


def test_a_team_name_with_patient_details_is_refused(convo: Conversation, falls: str, engine: Engine) -> None:
    reply = convo.submit("story", story_values("falls-prevention", recognised_group="bay 3, Mrs Jones 943 476 5919"))
    assert "*Team or group to thank*" in reply and "NHS number" in reply
    assert stories_in(engine) == []


def test_the_name_is_shown_only_when_the_author_chooses(
    convo: Conversation, platform: RecordingPlatform, falls: str
) -> None:
    convo.submit("story", story_values("falls-prevention", show_name="yes", recognised=""))
    assert "Shared by: <@alice>" in card_text(posts_to(platform, falls)[-1])


def test_a_story_can_be_typed_in_a_dm_naming_the_community(convo: Conversation, falls: str) -> None:
    assert "is shared in" in convo.submit("story", story_values("Falls prevention"))


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"title": "  "}, "*Title*: This can't be empty."),
        ({"action": ""}, "*What was done*: This can't be empty."),
        ({"action": "x" * 3001}, "*What was done*: This is 3001 characters; keep it to 3000."),
        ({"title": "t" * 151}, "*Title*: This is 151 characters; keep it to 150."),
        ({"themes": "astrology"}, "`astrology` isn't a theme."),
        ({"consent_scope": "the world"}, "*Who may see it*: Choose community, all_communities or safety_team."),
        ({"recognised": "@bob <script>"}, "`<script>` isn't someone I know."),
        ({"community": "nowhere-at-all"}, "I can't find a community called “nowhere-at-all”"),
        ({"community": ""}, "Choose the community the story is for."),
    ],
)
def test_bad_form_input_gets_a_specific_reply_and_nothing_is_stored(
    convo: Conversation, falls: str, engine: Engine, changes: dict[str, str], expected: str
) -> None:
    values = story_values("falls-prevention")
    values.update(changes)
    assert expected in convo.submit("story", values)
    assert stories_in(engine) == []


def test_a_story_for_an_archived_community_is_refused(convo: Conversation, falls: str, engine: Engine) -> None:
    convo.say("/cop archive falls-prevention confirm")
    assert "has been archived" in convo.submit("story", story_values("falls-prevention"))
    assert stories_in(engine) == []


@pytest.mark.parametrize("context", ["story:999", "story:abc", "nonsense", "story:"])
def test_an_expired_or_invalid_form_context_is_refused(
    bot: CopBot, convo: Conversation, falls: str, context: str
) -> None:
    replies = bot.handle_submission(
        actor=convo.actor("alice"), form_id="story", values=story_values("falls-prevention"), context=context
    )
    assert "That form has expired" in visible(replies[0].message)  # type: ignore[arg-type]


def test_markup_and_mentions_are_stored_as_text_and_rendered_safely(
    convo: Conversation, platform: RecordingPlatform, falls: str, engine: Engine
) -> None:
    action = "Told <!channel> and <!subteam^S1|@nurses> via <https://evil.example|a link>; thanks <@bob>"
    convo.submit("story", story_values("falls-prevention", action=action, recognised=""))
    assert stories_in(engine)[0].action == action
    card = posts_to(platform, falls)[-1]
    assert slack_pings(message_payload(card)) == set()  # nothing Slack would act on: no ping, no hidden link
    assert action in seen_slack(card)  # shown exactly as typed


# --- PII guard and incident language ----------------------------------------------------------------------------


def test_a_story_with_an_nhs_number_is_refused_naming_the_field_not_the_value(
    convo: Conversation, platform: RecordingPlatform, falls: str, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    posts_before = len(platform.calls)
    reply = convo.submit("story", story_values("falls-prevention", situation=f"Patient NHS {NHS_NUMBER} fell twice."))
    assert "*The situation*: This looks like it contains an NHS number" in reply
    assert NHS_NUMBER not in reply and NHS_NUMBER.replace(" ", "") not in reply
    assert stories_in(engine) == []
    assert platform.calls[posts_before:] == []  # nothing posted, nobody messaged
    assert NHS_NUMBER not in caplog.text and NHS_NUMBER.replace(" ", "") not in caplog.text


def test_the_nhs_number_appears_nowhere_in_the_database_file_or_the_logs(
    tmp_path: Path, clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    path = tmp_path / "copbot.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    platform = RecordingPlatform()
    bot = CopBot(engine=engine, platform=platform, clock=clock, config=CoreConfig())
    convo = Conversation(bot, platform)
    convo.say("/cop create Falls prevention")
    channel = next(iter(platform.channels))
    for field in ("title", "situation", "action", "why_it_works", "impact"):
        value = f"NHS no {NHS_NUMBER}" if field == "title" else f"Seen today, number {NHS_NUMBER.replace(' ', '-')}."
        assert "NHS number" in convo.submit("story", story_values("falls-prevention", **{field: value}))
    # The same through a reaction and a shortcut: refused before any text is stored.
    message = source(channel, f"Great catch on bed 4 ({NHS_NUMBER}) by <@carol>")
    assert "NHS number" in react(bot, convo, message, user="carol")
    shortcut = bot.story_shortcut(actor=convo.actor("bob"), message=message)
    form = shortcut[0].form
    assert form is not None
    values = {f.name: f.initial for f in form.fields}
    replies = bot.handle_submission(actor=convo.actor("bob"), form_id="story", values=values, context=form.context)
    assert "NHS number" in visible(replies[0].message)  # type: ignore[arg-type]
    engine.dispose()
    with sqlite3.connect(path) as raw:
        raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("copbot.db"))
    assert len(stored) > 10_000  # the database really is there
    for form_of_number in (NHS_NUMBER, NHS_NUMBER.replace(" ", ""), NHS_NUMBER.replace(" ", "-")):
        assert form_of_number.encode() not in stored
        assert form_of_number not in caplog.text
    assert all("NHS" not in str(c[1]) for c in platform.calls if c[0] in ("post", "send_dm"))


def test_incident_language_never_blocks_but_adds_the_pointer(
    engine: Engine, platform: RecordingPlatform, clock: FixedClock
) -> None:
    bot = CopBot(
        engine=engine, platform=platform, clock=clock, config=CoreConfig(incident_url="https://trust.example/report")
    )
    convo = Conversation(bot, platform)
    convo.say("/cop create Falls prevention")
    reply = convo.submit("story", story_values("falls-prevention", situation="After a near miss we changed the rota."))
    assert "is shared in" in reply
    [pointer] = [line for line in reply.splitlines() if "_near miss_" in line]
    assert pointer.endswith("https://trust.example/report")  # the link last: no punctuation sticks to it


# --- capture from a message: reactions and the shortcut, with the author's consent ----------------------------------


def test_a_reaction_asks_the_author_and_nothing_is_shared_until_they_approve(
    bot: CopBot, convo: Conversation, platform: RecordingPlatform, falls: str, engine: Engine
) -> None:
    message = source(falls, "Lovely handover from <@carol> today: she used SBAR for every patient.")
    posts_before = len(posts_to(platform, falls))
    reply = react(bot, convo, message, user="alice")
    assert "I've asked <@bob> to approve the story (#1); nothing is shared unless they do." in reply
    [ask] = dms_to(platform, "bob")
    assert [b.label for b in ask.buttons] == ["Approve", "Approve with my name", "Edit", "Decline"]
    assert "<@alice> would like to save your message in <#" in visible(ask)
    assert len(posts_to(platform, falls)) == posts_before
    [story] = stories_in(engine)
    assert (story.status, story.source, story.title) == (
        "awaiting_author", "reaction", "Lovely handover from @carol today: she used SBAR for every patient",
    )  # fmt: skip
    assert story.recognised_ids == ["carol"] and story.source_link == "https://chat/archives/x"
    assert "Only the story's author can do that." in convo.click("story.approve", str(story.id), user="alice")
    assert "is shared in" in convo.click("story.approve", str(story.id), user="bob")
    assert len(posts_to(platform, falls)) == posts_before + 1
    assert "original message: https://chat/archives/x" in card_text(posts_to(platform, falls)[-1])
    assert any("approved the story you saved" in visible(m) for m in dms_to(platform, "alice"))
    assert any("recognised you" in visible(m) for m in dms_to(platform, "carol"))
    assert "already a story (#1)" in convo.click("story.approve", str(story.id), user="bob")


def test_the_same_message_captured_twice_is_one_story(
    bot: CopBot, convo: Conversation, platform: RecordingPlatform, falls: str, engine: Engine
) -> None:
    message = source(falls, "Pharmacy double-checks insulin with us at 5pm.")
    react(bot, convo, message, user="alice")
    assert "already waiting for its author" in react(bot, convo, message, user="carol")
    assert "already waiting for its author" in react(bot, convo, message, user="alice")  # a retried event
    assert len(stories_in(engine)) == 1
    assert len(dms_to(platform, "bob")) == 1


def test_decline_discards_the_text_and_a_later_reaction_does_not_ask_again(
    bot: CopBot, convo: Conversation, platform: RecordingPlatform, falls: str, engine: Engine
) -> None:
    message = source(falls, "We tried a quiet-time sign on the door.")
    react(bot, convo, message, user="alice")
    story_id = str(stories_in(engine)[0].id)
    assert "nothing was shared" in convo.click("story.decline", story_id, user="bob")
    [story] = stories_in(engine)
    assert story.status == StoryStatus.WITHDRAWN and story.action == "" and story.title == ""
    assert "won't ask them again" in react(bot, convo, message, user="carol")
    assert len(dms_to(platform, "bob")) == 1


def test_the_author_can_edit_before_approving(
    bot: CopBot, convo: Conversation, platform: RecordingPlatform, falls: str, engine: Engine
) -> None:
    react(bot, convo, source(falls, "Night team idea: torch checks."), user="alice")
    story_id = str(stories_in(engine)[0].id)
    assert "Only the story's author" in convo.click("story.edit", story_id, user="alice")
    bot_replies = bot.handle_action(actor=convo.actor("bob"), action_id="story.edit", value=story_id)
    form = bot_replies[0].form
    assert form is not None and form.context == f"story:{story_id}"
    values = {f.name: f.initial for f in form.fields} | {"title": "Torch checks at night", "show_name": "yes"}
    replies = bot.handle_submission(actor=convo.actor("bob"), form_id="story", values=values, context=form.context)
    assert "is shared in" in visible(replies[0].message)  # type: ignore[arg-type]
    text = card_text(posts_to(platform, falls)[-1])
    assert "Torch checks at night" in text and "Shared by: <@bob>" in text


def test_a_reaction_by_the_author_still_asks_them_to_confirm(
    bot: CopBot, convo: Conversation, platform: RecordingPlatform, falls: str
) -> None:
    reply = react(bot, convo, source(falls, "We label IV lines at the pump."), user="bob")
    assert "I've sent you a private message" in reply
    assert [b.action_id for b in dms_to(platform, "bob")[-1].buttons] == [
        "story.approve",
        "story.approve_named",
        "story.edit",
        "story.decline",
    ]


@pytest.mark.parametrize(
    ("where", "message", "expected"),
    [
        ("dm", SourceMessage("D1", "1.1", "bob", "hello"), "only in a community's channel"),
        ("elsewhere", SourceMessage("C-random", "1.2", "bob", "hello"), "only in a community's channel"),
        ("channel", SourceMessage("", "1.3", "copbot", "Welcome!", from_bot=True), "from a bot"),
        ("channel", SourceMessage("", "1.4", "bob", "   "), "no text"),
    ],
)
def test_reactions_that_cannot_become_stories_get_a_private_reason(
    bot: CopBot, convo: Conversation, falls: str, engine: Engine, where: str, message: SourceMessage, expected: str
) -> None:
    if where == "channel":
        message = SourceMessage(
            falls, message.message_id, message.author_user_id, message.text, from_bot=message.from_bot
        )
    assert expected in react(bot, convo, message, user="alice")
    assert stories_in(engine) == []


def test_other_emoji_are_ignored_and_store_nothing(
    bot: CopBot, convo: Conversation, platform: RecordingPlatform, falls: str, engine: Engine
) -> None:
    calls = len(platform.calls)
    assert bot.story_reaction(actor=convo.actor("alice"), message=source(falls, "Nice"), emoji="thumbsup") == []
    assert stories_in(engine) == [] and len(platform.calls) == calls


def test_a_reaction_in_an_archived_community_is_refused(bot: CopBot, convo: Conversation, falls: str) -> None:
    convo.say("/cop archive falls-prevention confirm")
    assert "has been archived" in react(bot, convo, source(falls, "Good idea"), user="alice")


def test_the_shortcut_by_the_author_prefills_the_form_and_publishes(
    bot: CopBot, convo: Conversation, platform: RecordingPlatform, falls: str, engine: Engine
) -> None:
    message = source(falls, "Tip: put the falls sensor mat check on the board. It works.\nSecond line.")
    [reply] = bot.story_shortcut(actor=convo.actor("bob"), message=message)
    form = reply.form
    assert form is not None
    initial = {f.name: f.initial for f in form.fields}
    assert initial["title"] == "Tip: put the falls sensor mat check on the board"
    assert initial["action"] == message.text and initial["community"] != ""
    [draft] = stories_in(engine)
    assert draft.status == StoryStatus.DRAFT and draft.action == ""  # ids only until the form is saved
    replies = bot.handle_submission(actor=convo.actor("bob"), form_id="story", values=initial, context=form.context)
    assert "is shared in" in visible(replies[0].message)  # type: ignore[arg-type]
    [story] = stories_in(engine)
    assert (story.status, story.source) == ("published", "shortcut")


def test_the_shortcut_by_someone_else_waits_for_the_author(
    bot: CopBot, convo: Conversation, platform: RecordingPlatform, falls: str, engine: Engine
) -> None:
    [reply] = bot.story_shortcut(actor=convo.actor("alice"), message=source(falls, "Bob's whiteboard trick"))
    assert reply.form is not None
    values = {f.name: f.initial for f in reply.form.fields}
    stranger = bot.handle_submission(
        actor=convo.actor("mallory"), form_id="story", values=values, context=reply.form.context
    )
    assert "That form has expired" in visible(stranger[0].message)  # type: ignore[arg-type]
    replies = bot.handle_submission(
        actor=convo.actor("alice"), form_id="story", values=values, context=reply.form.context
    )
    assert "I've asked <@bob> to approve" in visible(replies[0].message)  # type: ignore[arg-type]
    assert stories_in(engine)[0].status == StoryStatus.AWAITING_AUTHOR
    assert [b.label for b in dms_to(platform, "bob")[-1].buttons] == [
        "Approve",
        "Approve with my name",
        "Edit",
        "Decline",
    ]


def test_the_shortcut_outside_a_community_channel_asks_for_the_community(
    bot: CopBot, convo: Conversation, falls: str
) -> None:
    [reply] = bot.story_shortcut(actor=convo.actor("bob"), message=source("C-general", "A general tip"))
    assert reply.form is not None and reply.form.fields[0].name == "community" and reply.form.fields[0].initial == ""
    values = {f.name: f.initial for f in reply.form.fields} | {"community": "falls-prevention"}
    replies = bot.handle_submission(
        actor=convo.actor("bob"), form_id="story", values=values, context=reply.form.context
    )
    assert "is shared in" in visible(replies[0].message)  # type: ignore[arg-type]


# --- edit, withdraw, show -------------------------------------------------------------------------------------------


def test_the_author_edits_and_withdraws_and_withdrawn_stories_leave_search(
    bot: CopBot, convo: Conversation, falls: str, engine: Engine
) -> None:
    convo.submit("story", story_values("falls-prevention"))
    assert "Safety huddles" in convo.say("/cop stories huddle", user="bob")
    assert "Only the story's author" in convo.say("/cop story edit 1", user="bob")
    convo.say("/cop story edit 1")
    form = convo.last[0].form
    assert form is not None and "community" not in [f.name for f in form.fields]
    values = {f.name: f.initial for f in form.fields} | {"title": "Safety huddles, twice a day"}
    replies = bot.handle_submission(actor=convo.actor("alice"), form_id="story", values=values, context=form.context)
    assert "Story #1 is updated" in visible(replies[0].message)  # type: ignore[arg-type]
    assert "twice a day" in convo.say("/cop stories twice", user="bob")
    assert "Only the story's author or its community's facilitators" in convo.say("/cop story withdraw 1", user="bob")
    assert "Story #1 is withdrawn" in convo.say("/cop story withdraw 1")
    assert "No stories match" in convo.say("/cop stories huddle", user="bob")
    assert "There's no story #1 that you can see" in convo.say("/cop story 1", user="bob")
    assert "withdrawn, so it can't be edited" in convo.say("/cop story edit 1")


def test_a_facilitator_can_withdraw_a_members_story_and_it_is_audited(
    bot: CopBot, convo: Conversation, falls: str, engine: Engine
) -> None:
    convo.submit("story", story_values("falls-prevention"), user="bob")
    assert "is withdrawn" in convo.click("story.withdraw", "1", user="alice")
    with Session(engine) as db:
        [event] = db.exec(select(AuditEvent).where(AuditEvent.action == "story.withdraw")).all()
    assert '"by_author": false' in event.detail and '"story_id": 1' in event.detail


def test_story_number_shows_the_card_only_to_people_who_may_see_it(convo: Conversation, falls: str) -> None:
    convo.submit("story", story_values("falls-prevention", recognised=""))
    assert "Safety huddles" in convo.say("/cop story 1", user="bob")
    assert "There's no story #1 that you can see" in convo.say("/cop story 1", user="carol")  # not a member
    assert "There's no story #99 that you can see" in convo.say("/cop story edit 99")  # the same words: nothing leaks
    assert "`/cop story` opens the story form" in convo.say("/cop story tell me")


def test_search_replies_with_ranked_snippets_and_latest_when_empty(convo: Conversation, falls: str) -> None:
    convo.submit("story", story_values("falls-prevention", recognised=""))
    convo.submit("story", story_values("falls-prevention", title="Medicines round bibs", action="Do not disturb bibs."))
    reply = convo.say("/cop stories huddle", user="bob")
    assert "*Stories matching “huddle”*" in reply and "*#1 Safety huddles before every shift*" in reply
    assert "*huddle*" in reply  # the snippet marks the match
    latest = convo.say("/cop stories", user="bob")
    assert latest.index("#2 Medicines") < latest.index("#1 Safety")
    assert "There are no stories you can see yet" in convo.say("/cop stories", user="carol")
    assert "No stories match “zebra”" in convo.say("/cop stories zebra", user="bob")


# --- export ---------------------------------------------------------------------------------------------------------


def test_facilitators_export_consented_stories_privately_and_it_is_audited(
    bot: CopBot, convo: Conversation, platform: RecordingPlatform, falls: str, engine: Engine
) -> None:
    convo.submit("story", story_values("falls-prevention", title="=HYPERLINK(1)", show_name="yes"), user="bob")
    convo.submit("story", story_values("falls-prevention", title="Second story", consent_scope="safety_team"))
    convo.submit("story", story_values("falls-prevention", title="Withdrawn one"))
    convo.say("/cop story withdraw 3")
    react(bot, convo, source(falls, "Waiting for consent"), user="alice")
    assert "Only facilitators of *Falls prevention*" in convo.say("/cop export csv in:falls-prevention", user="bob")
    reply = convo.say("/cop export csv", channel=falls)
    assert "I've sent you `stories-falls-prevention-20261125-090000-" in reply and ".csv` privately: 2 stories" in reply
    [upload] = platform.called("upload_file")
    assert upload["user_id"] == "alice" and upload["filename"].endswith(".csv")
    rows = list(csv.DictReader(io.StringIO(upload["content"].decode("utf-8-sig"))))
    assert [r["title"] for r in rows] == ["'=HYPERLINK(1)", "Second story"]
    assert rows[0]["shared_by"] == "Bob" and rows[1]["shared_by"] == ""  # alice did not choose to show her name
    assert rows[1]["who_may_see"] == "safety_team"
    with Session(engine) as db:
        [event] = db.exec(select(AuditEvent).where(AuditEvent.action == "story.export")).all()
    assert event.detail == '{"count": 2, "format": "csv"}'


@pytest.mark.parametrize("fmt", ["md", "html"])
def test_markdown_and_html_exports_escape_what_people_typed(
    convo: Conversation, platform: RecordingPlatform, falls: str, fmt: str
) -> None:
    convo.submit("story", story_values("falls-prevention", title="<script>alert(1)</script> huddles"))
    convo.say(f"/cop export {fmt} in:falls-prevention")
    content = platform.called("upload_file")[-1]["content"].decode()
    assert "<script>" not in content and "huddles" in content and "Our ward had several falls" in content
    if fmt == "html":
        assert content.startswith("<!doctype html>") and "&lt;script&gt;" in content


def test_help_lists_the_story_commands_as_available(convo: Conversation) -> None:
    text = convo.say("/cop help")
    for line in ("`/cop story", "`/cop stories [words…]`", "`/cop export [csv|md|html] [in:<community>]`"):
        start = text.index(line)
        assert "coming soon" not in text[start : text.index("\n", start)]
    assert "phrase" in convo.say("/cop help stories")


def test_replies_are_never_raised_into_the_platform(bot: CopBot, convo: Conversation) -> None:
    replies: list[Reply] = bot.handle_action(actor=Actor("test", "T1", "alice"), action_id="story.approve", value="x")
    assert "no longer exists" in visible(replies[0].message)  # type: ignore[arg-type]


def test_a_form_drawn_again_keeps_every_typed_word_and_the_people_chosen(convo: Conversation, falls: str) -> None:
    typed = story_values("falls-prevention", situation="Bed 4, NHS 943 476 5919", recognised="<@bob>")
    alice = convo.actor("alice")

    errors = convo.bot.validate_submission(actor=alice, form_id="story", values=typed)
    form = convo.bot.form_again(actor=alice, form_id="story", values=typed)

    assert list(errors) == ["situation"]
    assert form is not None
    shown = {f.name: f.initial for f in form.fields}
    assert shown["situation"] == "Bed 4, NHS 943 476 5919" and shown["action"] == typed["action"]
    assert shown["recognised"] == "bob"  # the picker gets the person back, not the markup
    assert convo.bot.form_again(actor=alice, form_id="story", values=typed, context="story:999") is None
    assert convo.bot.form_again(actor=alice, form_id="nonsense", values=typed) is None


def test_an_edit_form_drawn_again_is_still_the_edit_of_that_story(convo: Conversation, falls: str) -> None:
    convo.submit("story", story_values("falls-prevention"))
    form = convo.bot.form_again(
        actor=convo.actor("alice"), form_id="story", values={"title": "New title"}, context="story:1"
    )
    assert form is not None and form.context == "story:1"
    assert "community" not in {f.name for f in form.fields}  # an edit never moves the story
    assert {f.name: f.initial for f in form.fields}["title"] == "New title"
    assert convo.bot.form_again(actor=convo.actor("bob"), form_id="story", values={}, context="story:1") is None
