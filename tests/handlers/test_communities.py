"""Community management, read as conversations between people and copbot (recording platform)."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlmodel import Session, select

from handlers.context import CoreConfig
from storage import repository as repo
from storage.models import AuditEvent, Community, Member
from tests.conftest import Conversation, FixedClock


def test_create_makes_channel_welcomes_and_makes_caller_facilitator(convo: Conversation) -> None:
    reply = convo.say("/cop create Falls prevention | Sharing what works on our wards")
    assert "Created *Falls prevention*" in reply
    assert "`cop-falls-prevention`" in reply
    [created] = convo.platform.called("create_channel")
    assert created == {
        "name": "cop-falls-prevention",
        "topic": "Sharing what works on our wards",
        "purpose": "Sharing what works on our wards",
    }
    channel_id = next(iter(convo.platform.channels))
    assert convo.platform.members[channel_id] == {"alice"}
    [welcome] = convo.platform.called("post")
    body = "\n".join(s.text for s in welcome["message"].sections)
    assert "Welcome to Falls prevention" in body
    assert "A shared domain" in body and "A community" in body and "A shared practice" in body
    assert "is now a facilitator" in convo.say(f"/cop facilitator add <@bob> in:<#{channel_id}>")


def test_list_shows_purpose_member_count_and_channel(convo: Conversation) -> None:
    assert "no communities yet" in convo.say("/cop list").lower()
    convo.say("/cop create Falls prevention | Sharing what works")
    convo.say("/cop create Medicines safety")
    convo.say("/cop join falls-prevention", user="bob")
    listing = convo.say("/cop list", user="carol")
    assert "Communities (2)" in listing
    assert "*Falls prevention* — Sharing what works" in listing
    assert "2 members" in listing and "1 member" in listing
    assert "<#C0001>" in listing


def test_join_is_idempotent_and_invites_to_channel(convo: Conversation) -> None:
    convo.say("/cop create Falls prevention")
    assert "You're now a member of *Falls prevention*" in convo.say("/cop join Falls Prevention", user="bob")
    assert "already a member" in convo.say("/cop join falls-prevention", user="bob")
    assert "already a member" in convo.say("/cop join <#C0001|cop-falls-prevention>", user="bob")
    assert convo.platform.members["C0001"] == {"alice", "bob"}


def test_join_unknown_community_lists_near_names(convo: Conversation) -> None:
    convo.say("/cop create Falls prevention")
    convo.say("/cop create Medicines safety")
    reply = convo.say("/cop join falls prevension", user="bob")
    assert "Did you mean: *Falls prevention*?" in reply
    assert "For example: `/cop join falls-prevention`" in reply
    reply = convo.say("/cop join zzzz", user="bob")
    assert "Communities here: *Falls prevention*, *Medicines safety*" in reply


def test_join_needs_a_community(convo: Conversation) -> None:
    assert "Which community would you like to join?" in convo.say("/cop join", user="bob")


def test_leave_in_channel_without_name_and_last_facilitator_rule(convo: Conversation) -> None:
    convo.say("/cop create Falls prevention")
    convo.say("/cop join falls-prevention", user="bob")
    assert "You've left *Falls prevention*" in convo.say("/cop leave", user="bob", channel="C0001")
    assert "not a member" in convo.say("/cop leave falls-prevention", user="bob")
    convo.say("/cop join falls-prevention", user="bob")
    refusal = convo.say("/cop leave falls-prevention")
    assert "only facilitator" in refusal and "/cop facilitator add" in refusal
    convo.say("/cop facilitator add <@bob> in:falls-prevention")
    assert "You've left" in convo.say("/cop leave falls-prevention")
    assert ("remove", {"channel_id": "C0001", "user_id": "alice"}) in convo.platform.calls


def test_duplicate_names_are_refused_with_the_existing_channel(convo: Conversation) -> None:
    convo.say("/cop create Falls prevention")
    reply = convo.say("/cop create falls PREVENTION", user="bob")
    assert "already a community called *Falls prevention*" in reply
    assert "/cop join falls-prevention" in reply
    assert "already a community" in convo.say("/cop create Falls-Prevention!", user="bob")
    assert len(convo.platform.called("create_channel")) == 1


@pytest.mark.parametrize("name", ["🎉🎉🎉", "!!! ??? ...", "—"])
def test_names_without_letters_or_digits_are_refused(convo: Conversation, name: str) -> None:
    reply = convo.say(f"/cop create {name}")
    assert "at least one letter or digit" in reply
    assert "For example: `/cop create Falls prevention" in reply
    assert convo.platform.called("create_channel") == []


def test_long_name_gets_a_valid_slug_and_is_told(convo: Conversation) -> None:
    name = "Improving " + "really " * 25 + "safe care"  # 194 characters
    assert len(name) <= 200
    reply = convo.say(f"/cop create {name}")
    [created] = convo.platform.called("create_channel")
    assert len(created["name"]) <= 80
    assert created["name"].startswith("cop-improving-really")
    assert created["name"] == created["name"].lower() and not created["name"].endswith("-")
    assert f"`{created['name']}`" in reply and "shortened" in reply
    assert "keep it to 200" in convo.say("/cop create " + "x" * 201)


def test_accented_names_become_ascii_channels(convo: Conversation) -> None:
    convo.say("/cop create Café équipe Zoë")
    assert convo.platform.called("create_channel")[0]["name"] == "cop-cafe-equipe-zoe"


def test_taken_channel_name_is_explained(convo: Conversation) -> None:
    convo.platform.channels["CEXIST"] = "cop-falls"
    reply = convo.say("/cop create Falls")
    assert "`cop-falls` was taken, so the channel is `cop-falls-2`" in reply


def test_creators_setting_limits_who_may_create(convo: Conversation) -> None:
    convo.bot.config = CoreConfig(creators=frozenset({"ceo"}))
    reply = convo.say("/cop create Falls", user="bob")
    assert "Only these people can create communities here: <@ceo>" in reply
    assert "Created" in convo.say("/cop create Falls", user="ceo")


def test_facilitator_commands_refuse_members_and_name_facilitators(convo: Conversation) -> None:
    convo.say("/cop create Falls prevention")
    convo.say("/cop join falls-prevention", user="bob")
    reply = convo.say("/cop archive falls-prevention confirm", user="bob")
    assert reply == "Only facilitators of *Falls prevention* can do that. Its facilitators: <@alice>."
    assert "Only facilitators" in convo.say("/cop facilitator add <@bob> in:falls-prevention", user="bob")
    assert convo.platform.called("archive_channel") == []


def test_facilitator_add_remove_is_audited_and_keeps_one(convo: Conversation) -> None:
    convo.say("/cop create Falls prevention")
    assert "<@bob> is now a facilitator" in convo.say("/cop facilitator add <@bob>", channel="C0001")
    assert convo.platform.called("send_dm")[0]["user_id"] == "bob"
    assert "no longer a facilitator" in convo.say("/cop facilitator remove <@alice>", user="bob", channel="C0001")
    assert "only facilitator" in convo.say("/cop facilitator remove <@bob>", user="bob", channel="C0001")
    assert "Say `add` or `remove`" in convo.say("/cop facilitator promote <@bob>", user="bob", channel="C0001")
    with Session(convo.bot.engine) as db:
        actions = [e.action for e in db.exec(select(AuditEvent).order_by(AuditEvent.id))]  # type: ignore[arg-type]
        details = [json.loads(e.detail) for e in db.exec(select(AuditEvent))]
    assert actions == ["community.create", "facilitator.add", "facilitator.remove"]
    assert details[0] == {"channel_id": "C0001", "slug": "falls-prevention"}


def test_archive_asks_to_confirm_then_archives_by_word_or_button(convo: Conversation) -> None:
    convo.say("/cop create Falls prevention")
    convo.say("/cop create Sepsis")
    ask = convo.say("/cop archive falls-prevention")
    assert "/cop archive falls-prevention confirm" in ask
    [button] = convo.last[0].message.buttons  # type: ignore[union-attr]
    assert convo.platform.called("archive_channel") == []
    assert "Archived *Falls prevention*" in convo.click(button.action_id, button.value)
    assert convo.platform.archived == {"C0001"}
    assert "already archived" in convo.say("/cop archive falls-prevention confirm")
    assert "Archived *Sepsis*" in convo.say("/cop archive sepsis confirm")
    assert "archived" in convo.say("/cop join falls-prevention", user="bob")
    assert "no communities yet" in convo.say("/cop list").lower()


def test_profile_key_values_validation_and_form(convo: Conversation) -> None:
    saved = convo.say('/cop profile profession="Staff nurse" organisation="Example NHS Trust" timezone=Europe/London')
    assert "Profession: Staff nurse" in saved and "Organisation: Example NHS Trust" in saved
    assert "isn't a time zone I know. Did you mean `Europe/London`?" in convo.say("/cop profile tz=Europe/Londn")
    assert "`grade` isn't a profile field" in convo.say("/cop profile grade=7")
    assert "isn't a `key=value` option" in convo.say("/cop profile nurse")
    assert "`=x` is not a `key=value` option" in convo.say("/cop profile =x")
    convo.say("/cop profile")
    [form_reply] = convo.last
    assert form_reply.form is not None
    assert {f.name: f.initial for f in form_reply.form.fields}["profession"] == "Staff nurse"
    assert "Organisation: —" in convo.submit(
        "profile", {"profession": "Pharmacist", "organisation": "", "timezone": ""}
    )
    with Session(convo.bot.engine) as db:
        alice = db.exec(select(Member).where(Member.user_id == "alice")).one()
    assert (alice.profession, alice.organisation, alice.timezone) == ("Pharmacist", None, None)


def test_unknown_subcommand_suggests_the_closest(convo: Conversation) -> None:
    assert (
        convo.say("/cop jion falls") == "I don't know `/cop jion`. Did you mean `/cop join`?\nFor example: `/cop help`"
    )
    assert "I don't know `/cop xyzzy`." in convo.say("/cop xyzzy")


def test_help_lists_commands_and_topics(convo: Conversation) -> None:
    text = convo.say("/cop help")
    for usage in ("create <name> [| <purpose>]", "join <community>", "facilitator add|remove"):
        assert usage in text
    assert "Community creators can run it" in convo.say("/cop help create")
    assert convo.say("/cop") == convo.say("/cop help")


@pytest.mark.parametrize("command", ["me export", "me forget", "report"])
def test_later_features_say_honestly_they_are_not_available(convo: Conversation, command: str) -> None:
    reply = convo.say(f"/cop {command}")
    assert "isn't available in this version of copbot yet" in reply


def test_platform_errors_become_private_replies_and_nothing_is_stored(convo: Conversation) -> None:
    convo.platform.fail["create_channel"] = "I'm not allowed to create channels in this workspace."
    assert convo.say("/cop create Falls") == "I'm not allowed to create channels in this workspace."
    with Session(convo.bot.engine) as db:
        assert db.exec(select(Community)).all() == []


def test_unexpected_errors_are_logged_without_text_and_roll_back(
    convo: Conversation, caplog: pytest.LogCaptureFixture
) -> None:
    def explode(**_: object) -> None:
        raise RuntimeError("boom")

    convo.platform.post = explode  # type: ignore[assignment,method-assign]
    reply = convo.say("/cop create Secret ward name")
    assert reply.startswith("Sorry, something went wrong on my side")
    assert "Secret ward name" not in caplog.text
    with Session(convo.bot.engine) as db:
        [community] = db.exec(select(Community)).all()
    assert community.channel_id in convo.platform.channels  # the channel made is recorded, never orphaned


def test_a_create_that_stopped_after_making_its_channel_is_finished_by_the_retry_without_a_second(
    convo: Conversation, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(**_: object) -> None:
        raise RuntimeError("the process stopped here")

    monkeypatch.setattr(repo, "open_community", crash)
    assert convo.say("/cop create Falls").startswith("Sorry, something went wrong")
    monkeypatch.undo()
    # The name is reserved (so nobody else makes the channel), but not listed until it has its channel.
    assert "is being created right now" in convo.say("/cop create Falls", user="bob")
    assert "Falls" not in convo.say("/cop list")
    clock.advance(dt.timedelta(minutes=3))

    assert "Created *Falls* with the channel `cop-falls`" in convo.say("/cop create Falls")

    assert len(convo.platform.called("create_channel")) == 1 and list(convo.platform.channels.values()) == ["cop-falls"]
    with Session(convo.bot.engine) as db:
        [community] = db.exec(select(Community)).all()
    assert community.channel_id == next(iter(convo.platform.channels))


def test_two_creates_of_one_name_make_one_channel(convo: Conversation) -> None:
    first, second = convo.say("/cop create Falls"), convo.say("/cop create falls", user="bob")
    assert "Created *Falls*" in first and "There is already a community called *Falls*" in second
    assert len(convo.platform.called("create_channel")) == 1


@pytest.mark.parametrize("method", ["post", "invite"])
def test_a_failed_welcome_or_invite_leaves_no_orphan_channel_and_a_retry_makes_no_second(
    convo: Conversation, method: str
) -> None:
    convo.platform.fail[method] = "Slack is busy right now; please try again in a minute."
    reply = convo.say("/cop create Falls")
    assert "Created *Falls*" in reply and "Slack is busy right now" in reply
    with Session(convo.bot.engine) as db:
        [community] = db.exec(select(Community)).all()
    assert community.channel_id in convo.platform.channels  # the channel made is the one stored
    del convo.platform.fail[method]
    assert "There is already a community called *Falls*" in convo.say("/cop create Falls")
    assert len(convo.platform.called("create_channel")) == 1 and list(convo.platform.channels.values()) == ["cop-falls"]
