"""What people see on Teams: typed text is shown as typed in markdown activities and Adaptive Cards, never turned
into HTML, a link behind a word or an image; the same content as on Slack and in the console."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from bot.teams import cards
from bot.teams.cards import Person
from handlers.ports import Button, Message, Section
from tests.bot.teams.conftest import TeamsWorld, card_errors
from tests.reference import reference_path
from tests.seen import seen_console, seen_slack, seen_teams, teams_links, teams_seen

HOSTILE = [
    "[click](https://evil.example)",
    "![pixel](https://evil.example/p.png)",
    '<a href="https://evil.example">click</a>',
    "<b>loud</b> & <img src=https://evil.example/p.png>",
    "&amp; &lt;tag&gt; 5 < 6 > 4",
    r"back\slash \[x\](https://evil.example) \*",
    "<at>Chief Executive</at>",
    "<!channel> Falls",
]


class Directory:
    """Sam is known with a Teams id; a second person's display name is itself hostile."""

    def person(self, user_id: str) -> Person | None:
        return {
            "U1": Person(name="Sam Jones", bot_user_id="29:sam"),
            "U2": Person(name="[Sam](https://evil.example) <b>x</b>", bot_user_id="29:evil"),
        }.get(user_id)

    def channel(self, channel_id: str) -> str | None:
        return "cop-falls" if channel_id == "C1" else None


@pytest.mark.parametrize("hostile", HOSTILE)
@pytest.mark.parametrize(
    "shape",
    [
        lambda t: Message(text=f"Hello {t}"),  # a markdown text activity
        lambda t: Message(text="fallback", title=t, sections=(Section(f"*{t}*"), Section("", fields=(("Who", t),)))),
        lambda t: Message(text=f"{t}\nsecond line", buttons=(Button("Go", "x.go"),)),  # a card without sections
    ],
    ids=["text-activity", "card-with-sections", "card-text"],
)
def test_typed_text_is_shown_as_typed_and_links_nowhere(hostile: str, shape: Any) -> None:
    message = shape(hostile)

    activity = cards.message_activity(message, Directory())

    assert teams_links(activity) == set()
    assert hostile in teams_seen(activity)
    for card in (a["content"] for a in activity.get("attachments", [])):
        assert card_errors(card) == []


def test_a_hostile_display_name_is_shown_not_linked() -> None:
    message = Message(text="Meet <@U2> and <@U1>, see <#C1>")

    text = cards.message_activity(message, Directory())
    card = cards.message_card(Message(text="x", sections=(Section("Meet <@U2>"),)), Directory())

    assert teams_seen(text) == "Meet [Sam](https://evil.example) <b>x</b> and Sam Jones, see cop-falls"
    assert teams_links(text) == set() and teams_links(card) == set()
    assert "Meet [Sam](https://evil.example) <b>x</b>" in teams_seen(card)
    # The mention entity's text is exactly the tag in the activity's text, as Teams requires.
    assert [e["text"] for e in text["entities"]] == re.findall(r"<at>.*?</at>", text["text"])


def test_code_spans_in_a_text_activity_are_left_as_typed() -> None:
    activity = cards.message_activity(Message(text="Try `/cop join <community>` & <b>"), Directory())

    assert "`/cop join <community>`" in activity["text"]  # markdown shows code as typed
    assert teams_seen(activity) == "Try /cop join <community> & <b>"


def test_a_quote_stays_a_quote() -> None:
    activity = cards.message_activity(Message(text="A starter:\n> What works > what fails?"), Directory())

    assert "\n> What works &gt; what fails?" in activity["text"]
    assert teams_seen(activity) == "A starter:\n> What works > what fails?"


MESSAGES = [
    Message(text="Plain *reply* with <#C1|cop-falls> & more"),
    Message(text="Digest text", title="Digest · Falls"),
    Message(
        text="ignored fallback", title="Introduction · Falls", sections=(Section("*Meet* Sam"), Section("Starter"))
    ),
    Message(text="x", title="Profile saved", sections=(Section("", fields=(("Profession", "Nurse"),)),)),
    Message(text="Skip this round?", buttons=(Button("Skip this round", "intro.skip", value="1"),)),
]


def words(seen: str) -> list[str]:
    return re.findall(r"[\w·]+", seen)


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: m.title or m.text[:12])
def test_teams_slack_and_the_console_show_the_same_content(message: Message) -> None:
    names = {"C1": "cop-falls"}
    slack, teams, console = seen_slack(message, names=names), seen_teams(message, Directory()), seen_console(message)

    assert words(teams) == words(slack)
    assert words(console.replace(":click 1", "").replace("[1]", "")) == words(slack)
    if message.sections:
        assert "fallback" not in teams and "fallback" not in slack


def test_the_channel_welcome_shows_a_hostile_community_name_as_typed(world: TeamsWorld) -> None:
    before = len(world.cloud.connector.calls)
    name = "[Falls](https://evil.example) <b>team</b>"

    world.post(
        world.channel_message(f"create {name} | <a href='https://evil.example'>our</a> & [work](https://x.example)")
    )

    bodies = [c.body.get("activity", c.body) for c in world.cloud.connector.calls[before:] if c.body]
    shown = [teams_seen(b) for b in bodies if b.get("type") == "message"]
    assert any(f"Welcome to {name}" in s for s in shown), shown
    assert all(teams_links(b) == set() for b in bodies if b.get("type") == "message")


# --- the helper, on Teams' own traffic ------------------------------------------------------------------------------


def recording(name: str) -> dict[str, Any]:
    return dict(json.loads(reference_path("teams-botbuilder-js-recordings", name).read_text()))


def test_teams_seen_reads_recorded_cards_and_mentions() -> None:
    task_card = recording("20191019180713442-reply-integrationBot.json")["body"]["activity"]
    actions_card = recording("20191020020554539-reply-integrationBot.json")["body"]
    mention = recording("20191020020553704-request-integrationBot.json")["body"]

    assert teams_seen(task_card) == "Adaptive Card from Task Module\nAnswer here...\nSubmit"
    assert teams_seen(actions_card).splitlines() == [
        "Bot Builder actions", "imBack", "message back", "message back local echo", "invoke",
    ]  # fmt: skip
    assert mention["text"] == "<at>My Combined</at>1\n"  # a person typing "@My Combined 1" to the bot
    assert teams_seen(mention) == "My Combined1"


def test_teams_seen_and_links_catch_what_teams_would_act_on() -> None:
    raw = {"type": "message", "textFormat": "markdown", "text": "See [the rota](https://evil.example) <b>now</b>"}
    html = {"type": "message", "text": '<a href="https://evil.example">rota</a> &amp; <img src="https://e.example/p">'}
    card = cards.card([{"type": "Container", "items": [{"type": "TextBlock", "text": "[x](https://evil.example)"}]}])

    assert teams_seen(raw) == "See the rota now" and teams_links(raw) == {"https://evil.example"}
    assert teams_seen(html) == "rota &" and teams_links(html) == {"https://evil.example", "https://e.example/p"}
    assert teams_seen(card) == "x" and teams_links(card) == {"https://evil.example"}
    escaped = cards.card([{"type": "TextBlock", "text": r"\[x\](https://evil.example) <b>"}])
    assert teams_seen(escaped) == "[x](https://evil.example) <b>" and teams_links(escaped) == set()
