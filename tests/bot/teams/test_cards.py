"""Neutral messages and forms as Adaptive Cards 1.5, validated against the schema in the shared reference folder."""

from __future__ import annotations

import datetime as dt
from urllib.parse import parse_qs, urlsplit

from bot.teams import cards
from bot.teams.cards import Person
from handlers.commands import help_reply
from handlers.communities import profile_form
from handlers.ports import Button, Form, FormField, Message, Section
from storage.models import Member
from tests.bot.teams.conftest import card_errors


class KnownNames:
    def person(self, user_id: str) -> Person | None:
        return Person(name="Sam Jones", bot_user_id="29:sam") if user_id == "U1" else None

    def channel(self, channel_id: str) -> str | None:
        return "cop-falls" if channel_id == "C1" else None


def test_every_help_card_validates() -> None:
    [reply] = help_reply(None)
    assert reply.message is not None
    card = cards.message_card(reply.message)
    assert card_errors(card) == []
    assert card["version"] == "1.5"
    assert "**For everyone**" in str(card["body"])


def test_sections_fields_and_buttons() -> None:
    message = Message(
        text="fallback",
        title="Profile saved",
        sections=(Section("*Your* profile", fields=(("Profession", "Nurse"), ("Organisation", "—"))),),
        buttons=(
            Button("Archive it", "community.archive", value="7", style="danger"),
            Button("Go", "x.go", style="primary"),
            Button("Read more", "x.url", url="https://example.org/more"),
        ),
    )

    card = cards.message_card(message)

    assert card_errors(card) == []
    assert card["body"][2] == {
        "type": "FactSet",
        "facts": [{"title": "Profession", "value": "Nurse"}, {"title": "Organisation", "value": "—"}],
    }
    submit, go, link = card["actions"]
    assert submit == {
        "type": "Action.Submit",
        "title": "Archive it",
        "data": {"action_id": "community.archive", "value": "7"},
        "style": "destructive",
    }
    assert go["style"] == "positive"
    assert link == {"type": "Action.OpenUrl", "title": "Read more", "url": "https://example.org/more"}


def test_every_kind_of_form_field_validates_and_submits_back() -> None:
    form = Form(
        form_id="story",
        title="Share a story",
        context="community:3",
        fields=(
            FormField("title", "Title", required=True, max_length=120, hint="A few words"),
            FormField("what", "What happened", kind="multiline", initial="draft"),
            FormField("scope", "Who may read it", kind="select", options=(("community", "This community"),)),
            FormField("themes", "Themes", kind="multiselect", options=(("a", "A"), ("b", "B")), initial="a,b"),
            FormField("names", "Show my name", kind="checkbox", hint="Show my name with the story"),
            FormField("tags", "Tags", kind="checkbox", options=(("x", "X"),)),
        ),
    )

    card = cards.form_card(form)

    assert card_errors(card) == []
    kinds = [e["type"] for e in card["body"] if e["type"].startswith("Input.")]
    assert kinds == [
        "Input.Text",
        "Input.Text",
        "Input.ChoiceSet",
        "Input.ChoiceSet",
        "Input.Toggle",
        "Input.ChoiceSet",
    ]
    data = card["actions"][0]["data"]
    assert data == {cards.FORM_KEY: "story", cards.CONTEXT_KEY: "community:3"}
    submitted = {**data, "title": "Handover", "themes": "a,b", "names": True, "msteams": {"x": 1}}
    assert cards.submitted_values(submitted) == {"title": "Handover", "themes": "a,b", "names": "true"}


def test_the_profile_form_and_its_dialog() -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    member = Member(platform="teams", workspace_id="t", user_id="u", profession="Nurse", created_at=now, updated_at=now)
    form = profile_form(member)

    dialog = cards.dialog_value(form.title, cards.form_card(form))

    card = dialog["task"]["value"]["card"]["content"]
    assert card_errors(card) == []
    assert card["body"][0]["value"] == "Nurse"
    opener = cards.open_dialog_card(form, {"command": "profile"})
    assert card_errors(opener) == []
    assert opener["actions"][0]["data"] == {"msteams": {"type": "task/fetch"}, cards.DIALOG_KEY: {"command": "profile"}}


def test_neutral_markup_becomes_teams_markdown_with_real_mentions() -> None:
    activity = cards.message_activity(Message(text="*Hi* <@U1> and <@U2>, see <#C1> :wave:"), KnownNames())

    assert activity["text"] == "**Hi** <at>Sam Jones</at> and someone, see **cop-falls** \N{WAVING HAND SIGN}"
    assert activity["entities"] == [
        {"type": "mention", "text": "<at>Sam Jones</at>", "mentioned": {"id": "29:sam", "name": "Sam Jones"}}
    ]
    assert activity["textFormat"] == "markdown"


def test_long_text_is_clipped_not_refused() -> None:
    card = cards.message_card(Message(text="x" * 20000))

    assert card_errors(card) == []
    assert len(card["body"][0]["text"]) == cards.TEXT_LIMIT


def test_the_schema_check_is_not_a_rubber_stamp() -> None:
    good = cards.message_card(Message(text="hello"))
    bad_element = {**good, "body": [{"type": "TextBlock"}]}  # a TextBlock needs text
    bad_field = {**good, "msteams": {"width": "Full"}}  # not a property of AdaptiveCard 1.5

    assert card_errors(good) == []
    assert card_errors(bad_element)
    assert card_errors(bad_field)


COLLEAGUES = {
    "A1": Person(name="Asha Patel", bot_user_id="29:asha", upn="asha.patel@example.nhs.uk"),
    "B2": Person(name="Ben O'Neill", bot_user_id="29:ben", upn="ben.oneill@example.nhs.uk"),
    "C3": Person(name="Cat Reyes", bot_user_id="29:cat"),
}


class Colleagues:
    """Two people with sign-in names and one without."""

    def person(self, user_id: str) -> Person | None:
        return COLLEAGUES.get(user_id)

    def channel(self, channel_id: str) -> str | None:
        return None


def deep_link(url: str) -> tuple[str, dict[str, list[str]]]:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}", parse_qs(parts.query)


def test_a_chat_invitation_becomes_a_teams_deep_link_button() -> None:
    message = Message(text="*Meet <@A1>*", title="Introduction · Falls", chat_with=("A1",))

    card = cards.message_card(message, Colleagues())

    assert card_errors(card) == []
    assert card["body"][1]["text"] == "**Meet Asha Patel**"  # the name inside bold text doesn't break it
    [chat] = card["actions"]
    assert (chat["type"], chat["title"]) == ("Action.OpenUrl", "Chat with Asha Patel")
    base, query = deep_link(chat["url"])
    assert base == "https://teams.microsoft.com/l/chat/0/0"
    assert query == {"users": ["asha.patel@example.nhs.uk"], "message": [cards.CHAT_GREETING]}
    assert "message=Hello%21%20copbot" in chat["url"]  # url-encoded, spaces as %20


def test_a_group_gets_one_group_chat_with_a_topic() -> None:
    message = Message(text="Meet them", title="Introduction · Falls", chat_with=("A1", "B2"))

    [chat] = cards.message_card(message, Colleagues())["actions"]

    assert chat["title"] == "Chat with Asha Patel and Ben O'Neill"
    _, query = deep_link(chat["url"])
    assert query["users"] == ["asha.patel@example.nhs.uk,ben.oneill@example.nhs.uk"]
    assert query["topicName"] == ["Introduction · Falls"]


def test_people_without_a_sign_in_name_get_no_link_but_are_still_named() -> None:
    partial = cards.message_card(Message(text="x", title="t", chat_with=("A1", "C3")), Colleagues())
    nobody = cards.message_activity(Message(text="Meet <@C3>", chat_with=("C3",)), Colleagues())

    # Not everyone can be linked: a 1:1 chat with each who can (a group without Cat would be the wrong group).
    assert [a["title"] for a in partial["actions"]] == ["Chat with Asha Patel"]
    [card] = [a["content"] for a in nobody["attachments"]]
    assert "actions" not in card
    assert card["body"][0]["text"] == "Meet **Cat Reyes**"
    assert card_errors(card) == []
