"""The one consent model at every exit, the author's say over their name, cards that follow their story, the PII
guard on every free text, and exports — asserted on what each person is shown (Slack's rendering of the message)."""

from __future__ import annotations

import csv
import io

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from handlers import consent
from handlers.app import CopBot
from storage.models import AuditEvent, Community, Member
from storage.stories import ConsentScope, Story, StoryStatus
from tests.conftest import Conversation, FixedClock
from tests.fakes.recording import RecordingPlatform
from tests.handlers.test_stories import source, stories_in, story_values
from tests.seen import seen_slack

NHS_NUMBER = "943 476 5919"  # valid Modulus 11, synthetic


@pytest.fixture
def falls(convo: Conversation, platform: RecordingPlatform) -> str:
    """Falls prevention: alice and fay facilitate, bob is a member, carol is in the workspace but not a member."""
    convo.say("/cop create Falls prevention | Sharing what works")
    convo.say("/cop join falls-prevention", user="bob")
    convo.say("/cop join falls-prevention", user="fay")
    convo.say("/cop facilitator add <@fay> in:falls-prevention")
    convo.say("/cop help", user="carol")
    return next(iter(platform.channels))


def seen_posts(platform: RecordingPlatform, channel: str) -> list[str]:
    return [seen_slack(c["message"]) for c in platform.called("post") if c["channel_id"] == channel]


def seen_dms(platform: RecordingPlatform, user: str) -> list[str]:
    return [seen_slack(c["message"]) for c in platform.called("send_dm") if c["user_id"] == user]


def everything_seen(platform: RecordingPlatform) -> dict[str, list[str]]:
    """Every place a message went (a channel id or `dm:<user>`), with what was shown there."""
    out: dict[str, list[str]] = {}
    for method, call in platform.calls:
        if method in ("post", "update_message"):
            out.setdefault(call["channel_id"], []).append(seen_slack(call["message"]))
        elif method == "send_dm":
            out.setdefault(f"dm:{call['user_id']}", []).append(seen_slack(call["message"]))
    return out


def places_showing(platform: RecordingPlatform, words: str) -> set[str]:
    return {where for where, texts in everything_seen(platform).items() if any(words in t for t in texts)}


# --- the rule itself ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "readers"),
    [
        (ConsentScope.ALL_COMMUNITIES, {"workspace", "member", "facilitator", "author"}),
        (ConsentScope.COMMUNITY, {"member", "facilitator", "author"}),
        (ConsentScope.SAFETY_TEAM, {"facilitator", "author"}),
    ],
)
def test_the_rule_names_who_may_read_each_scope(scope: ConsentScope, readers: set[str]) -> None:
    allowed = {a.name.lower() for a in consent.Audience if consent.allowed(scope, a)}
    assert allowed == readers
    assert consent.allowed(scope, consent.EXPORT)  # facilitators' files hold every scope, each row marked
    assert consent.allowed(scope, consent.CHANNEL) == (scope != ConsentScope.SAFETY_TEAM)


# --- every exit, every scope -------------------------------------------------------------------------------------


@pytest.mark.parametrize("scope", list(ConsentScope))
def test_the_channel_card_follows_the_scope(
    convo: Conversation, platform: RecordingPlatform, falls: str, scope: ConsentScope
) -> None:
    title = f"Torch checks {scope.value}"
    reply = convo.submit("story", story_values("falls-prevention", title=title, consent_scope=scope.value,
                                               recognised=""), user="bob")  # fmt: skip
    where = places_showing(platform, title)
    if scope == ConsentScope.SAFETY_TEAM:
        assert where == {"dm:alice", "dm:fay"}  # the facilitators, privately; never the channel
        assert "shared privately with the facilitators" in reply
        assert all("Shared only with the facilitators" in t for t in seen_dms(platform, "alice")[-1:])
    else:
        assert where == {falls}
        assert f"is shared in <#{falls}>" in reply


@pytest.mark.parametrize("scope", list(ConsentScope))
def test_search_and_story_number_follow_the_scope(convo: Conversation, falls: str, scope: ConsentScope) -> None:
    convo.submit("story", story_values("falls-prevention", title="Torch checks", consent_scope=scope.value,
                                       recognised=""), user="bob")  # fmt: skip
    convo.say("/cop create Sepsis", user="dan")
    readers = {"bob", "alice", "fay"}  # the author and the facilitators always
    if scope != ConsentScope.SAFETY_TEAM:
        readers |= {"ben"}
        convo.say("/cop join falls-prevention", user="ben")
    else:
        convo.say("/cop join falls-prevention", user="ben")
    if scope == ConsentScope.ALL_COMMUNITIES:
        readers |= {"carol", "dan"}
    for person in ("bob", "alice", "fay", "ben", "carol", "dan"):
        found = "Torch checks" in convo.say("/cop stories torch", user=person)
        shown = "Torch checks" in convo.say("/cop story 1", user=person)
        assert found == shown == (person in readers), person


@pytest.mark.parametrize("scope", list(ConsentScope))
def test_the_public_digest_lists_only_titles_the_channel_may_read(
    convo: Conversation, platform: RecordingPlatform, falls: str, scope: ConsentScope, clock: FixedClock
) -> None:
    convo.submit("story", story_values("falls-prevention", title="Torch checks", consent_scope=scope.value,
                                       recognised=""), user="bob")  # fmt: skip
    convo.say("/cop digest in:falls-prevention")
    digest = seen_posts(platform, falls)[-1]
    assert "happening in Falls prevention" in digest
    assert ("Torch checks" in digest) == (scope != ConsentScope.SAFETY_TEAM)


@pytest.mark.parametrize("scope", list(ConsentScope))
def test_thanks_name_the_story_only_to_people_who_may_read_it(
    convo: Conversation, platform: RecordingPlatform, falls: str, scope: ConsentScope
) -> None:
    convo.submit("story", story_values("falls-prevention", title="Torch checks", consent_scope=scope.value,
                                       recognised="@bob @carol"), user="alice")  # fmt: skip
    [to_bob] = seen_dms(platform, "bob")
    [to_carol] = seen_dms(platform, "carol")  # in the workspace, not a member
    assert "recognised you" in to_bob and "recognised you" in to_carol
    assert ("Torch checks" in to_bob) == (scope != ConsentScope.SAFETY_TEAM)
    assert ("Torch checks" in to_carol) == (scope == ConsentScope.ALL_COMMUNITIES)


def test_exports_hold_every_scope_for_facilitators_only(
    convo: Conversation, platform: RecordingPlatform, falls: str
) -> None:
    for scope in ConsentScope:
        convo.submit("story", story_values("falls-prevention", title=f"Story {scope.value}",
                                           consent_scope=scope.value, recognised=""), user="bob")  # fmt: skip
    assert "Only facilitators" in convo.say("/cop export csv in:falls-prevention", user="bob")
    convo.say("/cop export csv in:falls-prevention", user="fay")
    [upload] = platform.called("upload_file")
    assert upload["user_id"] == "fay"
    rows = list(csv.DictReader(io.StringIO(upload["content"].decode("utf-8-sig"))))
    assert {r["who_may_see"] for r in rows} == {s.value for s in ConsentScope}


# --- the author decides about their name ------------------------------------------------------------------------


def test_the_savers_form_offers_no_name_choice_for_someone_elses_message(
    bot: CopBot, convo: Conversation, falls: str
) -> None:
    [mine] = bot.story_shortcut(actor=convo.actor("bob"), message=source(falls, "My idea.", author="bob"))
    [theirs] = bot.story_shortcut(
        actor=convo.actor("alice"), message=source(falls, "Bob's idea.", author="bob", message_id="1700000001.1")
    )
    assert mine.form is not None and "show_name" in {f.name for f in mine.form.fields}
    assert theirs.form is not None and "show_name" not in {f.name for f in theirs.form.fields}


@pytest.mark.parametrize(("button", "named"), [("story.approve", False), ("story.approve_named", True)])
def test_only_the_author_decides_whether_their_name_is_shown(
    bot: CopBot, convo: Conversation, platform: RecordingPlatform, falls: str, engine: Engine, button: str, named: bool
) -> None:
    [form] = bot.story_shortcut(actor=convo.actor("alice"), message=source(falls, "Torch checks at night."))
    assert form.form is not None
    values = {f.name: f.initial for f in form.form.fields} | {"show_name": "yes"}  # a tampered form says "yes"
    bot.handle_submission(actor=convo.actor("alice"), form_id="story", values=values, context=form.form.context)
    ask = seen_dms(platform, "bob")[-1]
    assert "Approve with my name" in ask and "without your name" in ask
    story_id = str(stories_in(engine)[0].id)
    convo.click(button, story_id, user="bob")
    card = seen_posts(platform, falls)[-1]
    assert "Torch checks at night" in card
    assert ("@bob" in card) == named and ("a colleague" in card) != named
    assert stories_in(engine)[0].show_name is named


# --- cards follow their story -------------------------------------------------------------------------------------


def test_an_edit_updates_the_posted_card(convo: Conversation, platform: RecordingPlatform, falls: str) -> None:
    convo.submit("story", story_values("falls-prevention", recognised=""), user="bob")
    [posted] = platform.called("post")[-1:]
    replies = convo.bot.handle_submission(actor=convo.actor("bob"), form_id="story", context="story:1",
                                          values=story_values(title="Huddles at every handover", recognised=""),
                                          )  # fmt: skip
    assert replies[0].message is not None and "Its card in the channel shows the new version" in replies[0].message.text
    [update] = platform.called("update_message")
    with Session(convo.bot.engine) as db:
        story = db.get(Story, 1)
    assert story is not None and (update["channel_id"], update["message_id"]) == (falls, story.card_message_id)
    assert posted["channel_id"] == falls
    shown = seen_slack(update["message"])
    assert "Huddles at every handover" in shown and "five-minute huddle" in shown


def test_narrowing_the_scope_takes_the_card_down_and_widening_posts_it(
    convo: Conversation, platform: RecordingPlatform, falls: str
) -> None:
    convo.submit("story", story_values("falls-prevention", recognised=""), user="bob")
    submit = convo.bot.handle_submission
    submit(actor=convo.actor("bob"), form_id="story", context="story:1",
           values=story_values(recognised="", consent_scope="safety_team"))  # fmt: skip
    [update] = platform.called("update_message")
    assert "Safety huddles" not in seen_slack(update["message"]) and "only with" in seen_slack(update["message"])
    assert any("Safety huddles" in t for t in seen_dms(platform, "alice"))
    submit(actor=convo.actor("bob"), form_id="story", context="story:1",
           values=story_values(recognised="", consent_scope="community"))  # fmt: skip
    assert "Safety huddles" in seen_posts(platform, falls)[-1]


@pytest.mark.parametrize(("who", "line"), [("bob", "withdrawn by its author"), ("alice", "withdrawn by a facilitator")])
def test_a_withdrawal_replaces_the_card_and_a_facilitators_is_told_to_the_author(
    convo: Conversation, platform: RecordingPlatform, falls: str, engine: Engine, who: str, line: str
) -> None:
    convo.submit("story", story_values("falls-prevention", recognised=""), user="bob")
    before = len(seen_dms(platform, "bob"))
    reply = convo.say("/cop story withdraw 1", user=who)
    assert "is withdrawn" in reply
    [update] = platform.called("update_message")
    shown = seen_slack(update["message"])
    assert line in shown and "Safety huddles" not in shown and "five-minute huddle" not in shown
    told = seen_dms(platform, "bob")[before:]
    if who == "alice":
        assert len(told) == 1 and "@alice" in told[0] and "withdrew your story" in told[0]
    else:
        assert told == []
    assert "already withdrawn" in convo.say("/cop story withdraw 1", user=who)
    assert len(platform.called("update_message")) == 1


# --- the PII guard on every free text -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        f"/cop create Patient {NHS_NUMBER} group",
        f"/cop create Falls group | For patient {NHS_NUMBER}",
        "/cop create Ward SW1A 1AA huddles",
    ],
)
def test_a_community_name_or_purpose_with_an_identifier_makes_nothing(
    convo: Conversation, platform: RecordingPlatform, engine: Engine, command: str
) -> None:
    reply = convo.say(command)
    assert "looks like it contains" in reply and NHS_NUMBER not in reply
    assert platform.called("create_channel") == [] and platform.called("post") == []
    with Session(engine) as db:
        assert db.exec(select(Community)).all() == []


@pytest.mark.parametrize("field", ["profession", "organisation"])
def test_a_profile_field_with_an_identifier_is_refused_and_nothing_is_kept(
    convo: Conversation, engine: Engine, field: str
) -> None:
    convo.say('/cop profile profession="Staff nurse"')
    reply = convo.say(f'/cop profile {field}="Nurse {NHS_NUMBER}"')
    assert "looks like it contains an NHS number" in reply and NHS_NUMBER not in reply
    with Session(engine) as db:
        [member] = db.exec(select(Member).where(Member.user_id == "alice")).all()
    assert member.profession == "Staff nurse" and member.organisation is None


def test_a_person_to_recognise_that_is_an_nhs_number_is_refused(
    convo: Conversation, platform: RecordingPlatform, falls: str, engine: Engine
) -> None:
    reply = convo.submit("story", story_values("falls-prevention", recognised="@9000069939"))
    assert "*People to recognise*" in reply and "NHS number" in reply
    assert stories_in(engine) == [] and [c for c in platform.called("send_dm") if c["user_id"] == "9000069939"] == []


def test_an_edit_that_adds_an_identifier_is_refused_and_the_story_keeps_its_text(
    convo: Conversation, falls: str, engine: Engine
) -> None:
    convo.submit("story", story_values("falls-prevention", recognised=""), user="bob")
    replies = convo.bot.handle_submission(actor=convo.actor("bob"), form_id="story", context="story:1",
                                          values=story_values(recognised="", impact=f"NHS {NHS_NUMBER}"))  # fmt: skip
    assert replies[0].message is not None and "NHS number" in replies[0].message.text
    assert stories_in(engine)[0].impact == "Fewer falls and calmer handovers."


# --- exports ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("word", ["pdf", "docx", "falls-prevention"])
def test_an_unknown_export_format_is_refused_listing_the_formats(
    convo: Conversation, platform: RecordingPlatform, falls: str, word: str
) -> None:
    convo.submit("story", story_values("falls-prevention", recognised=""))
    reply = convo.say(f"/cop export {word}", channel=falls)
    assert f"`{word}` isn't an export format" in reply and "`csv`, `md`, `html`" in reply
    assert platform.called("upload_file") == []
    if word == "falls-prevention":
        assert "in:falls-prevention" in reply


def test_two_exports_in_one_second_get_different_names_and_show_names_not_markup(
    convo: Conversation, platform: RecordingPlatform, falls: str, engine: Engine
) -> None:
    convo.submit("story", story_values("falls-prevention", action="Thanks <@bob> for the torch idea",
                                       recognised="@bob"))  # fmt: skip
    convo.say("/cop export md in:falls-prevention")
    convo.say("/cop export md in:falls-prevention")
    first, second = platform.called("upload_file")
    assert first["filename"] != second["filename"]
    content = first["content"].decode()
    assert "Thanks @Bob for the torch idea" in content and "&lt;@" not in content and "<@" not in content
    with Session(engine) as db:
        assert len(db.exec(select(AuditEvent).where(AuditEvent.action == "story.export")).all()) == 2


def test_an_export_with_no_stories_says_so_and_sends_nothing(
    convo: Conversation, platform: RecordingPlatform, falls: str
) -> None:
    reply = convo.say("/cop export in:falls-prevention")
    assert "no published stories yet" in reply and platform.called("upload_file") == []


# --- bad input ----------------------------------------------------------------------------------------------------


def test_a_tampered_scope_is_refused_under_its_field(convo: Conversation, falls: str, engine: Engine) -> None:
    errors = convo.bot.validate_submission(actor=convo.actor("bob"), form_id="story",
                                           values=story_values("falls-prevention", consent_scope="everyone"),
                                           )  # fmt: skip
    assert set(errors) == {"consent_scope"}
    assert stories_in(engine) == []


def test_approving_after_the_community_was_archived_publishes_nothing(
    bot: CopBot, convo: Conversation, platform: RecordingPlatform, falls: str, engine: Engine
) -> None:
    bot.story_reaction(actor=convo.actor("alice"), message=source(falls, "Torch checks at night."), emoji="bulb")
    convo.say("/cop archive falls-prevention confirm")
    posts = len(platform.called("post"))
    reply = convo.click("story.approve", str(stories_in(engine)[0].id), user="bob")
    assert "archived" in reply
    assert len(platform.called("post")) == posts
    assert stories_in(engine)[0].status == StoryStatus.AWAITING_AUTHOR


@pytest.mark.parametrize("value", ["9" * 40, "²", "-1", "1e3", " ", "#"])
@pytest.mark.parametrize("action", ["story.approve", "story.withdraw", "community.archive", "intro.skip",
                                    "reflection.promote"])  # fmt: skip
def test_a_tampered_button_value_is_a_kind_refusal_never_an_error(
    convo: Conversation, falls: str, action: str, value: str
) -> None:
    reply = convo.click(action, value)
    assert reply and "Sorry, something went wrong" not in reply
