"""People in the console: the story form's people picker as `@name` (ids stored, names shown, an unknown name asked
again with the rest of the story kept), a team thanked in words, group DMs, and the lines a terminal can't take."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from sqlmodel import Session
from sqlmodel import select as sql_select

from bot.config import load_settings
from bot.console.app import ConsoleApp, build_console
from handlers.errors import PlatformError
from handlers.ports import Button, Message
from storage.stories import Story
from tests.bot.test_console_stories import feed
from tests.bot.test_console_terminal import SETUP, story_answers

WITH_PRIYA = SETUP + ":as priya\n/cop join falls-prevention\n:as you\n"  # you, sam and priya are members


def _console(tmp_path: Path, *, interactive: bool = False) -> ConsoleApp:
    settings = load_settings({"DATABASE_URL": f"sqlite:///{tmp_path}/c.db"}, env_file=None)
    return build_console(
        settings,
        inp=io.StringIO(),
        out=io.StringIO(),
        interactive=interactive,
        exports_dir=tmp_path / "exports",
        history_file=tmp_path / "history",
    )


@pytest.fixture
def app(tmp_path: Path) -> ConsoleApp:
    return _console(tmp_path)


@pytest.fixture(params=["core validation", "refusal reply only"])
def either(request: pytest.FixtureRequest, app: ConsoleApp, monkeypatch: pytest.MonkeyPatch) -> ConsoleApp:
    """With the core's `validate_submission`, and without it (the field is then found in the refusal)."""
    if request.param == "refusal reply only":
        monkeypatch.setattr(app.container.bot, "validate_submission", None, raising=False)
    return app


def stories(app: ConsoleApp) -> list[Story]:
    with Session(app.container.engine) as db:
        found = list(db.exec(sql_select(Story).order_by(Story.id)).all())  # type: ignore[arg-type]
        for story in found:
            db.expunge(story)
        return found


# --- the people question ----------------------------------------------------------------------------------------


def test_at_names_are_stored_as_ids_and_each_person_is_thanked(app: ConsoleApp) -> None:
    answers = story_answers(community="1", title="Bay tags", action="We tag bays", recognised="@Sam and @priya,")
    text = feed(app, WITH_PRIYA + "/cop story\n" + answers)
    assert "  People to recognise: mention people as @name, separated by spaces\n" in text
    assert "  People to recognise: @sam @priya\n" in text  # the answer read back as people
    assert "Recognising: @sam, @priya\n" in text  # on the card
    assert "DM to @sam · copbot: A colleague recognised you in a story" in text
    assert "DM to @priya · copbot: A colleague recognised you in a story" in text
    [story] = stories(app)
    assert story.recognised == "sam,priya" and story.recognised_ids == ["sam", "priya"]


def test_the_people_question_shows_the_people_by_name_when_editing(tmp_path: Path) -> None:
    app = _console(tmp_path, interactive=True)
    first = story_answers(community="1", title="Bay tags", action="We tag bays", recognised="@sam @priya")
    text = feed(app, WITH_PRIYA + "/cop story\n" + first + "/cop story edit 1\n" + "\n" * 10)
    questions = re.findall(r"\n  People to recognise \([^\[\n]*\) \[([^\]\n]*)\]: ", text)
    assert questions == ["", "@sam @priya"]  # nobody yet in a new story; the edited story's people by name
    assert "Story #1 is updated" in text and "(edited) #cop-falls-prevention · copbot: *Bay tags*" in text
    [story] = stories(app)
    assert story.recognised_ids == ["sam", "priya"]  # kept by the empty answer


def test_an_unknown_name_asks_only_that_question_again_and_keeps_the_story(either: ConsoleApp) -> None:
    app = either
    answers = story_answers(
        community="1", title="Bay tags", situation="Night falls", action="We tag bays", why_it_works="Everyone sees",
        impact="Fewer falls", recognised="@sam @nobody", recognised_group="Ward 7 night team", themes="falls",
    )  # fmt: skip
    text = feed(app, SETUP + "/cop story\n" + answers + "@sam\n/cop stories bay\n")
    assert "`nobody` isn't someone I know" in text
    assert "· please answer *People to recognise* again; your other answers are kept\n" in text
    again = text.split("your other answers are kept\n", 1)[1]
    assert "  People to recognise: @sam\n" in again
    assert "Title:" not in again.split("#cop-falls-prevention · copbot", 1)[0]  # nothing else was asked again
    assert text.count("  Title: Bay tags\n") == 1 and text.count("  What was done: We tag bays\n") == 1
    [story] = stories(app)
    assert (story.title, story.situation, story.action, story.why_it_works, story.impact) == (
        "Bay tags", "Night falls", "We tag bays", "Everyone sees", "Fewer falls"
    )  # fmt: skip
    assert (story.recognised_ids, story.recognised_group, story.theme_ids) == (["sam"], "Ward 7 night team", ["falls"])
    assert "DM to @nobody" not in text
    assert "*#1 Bay tags*" in text  # the next command ran as a command


def test_a_team_is_thanked_in_its_own_words_and_is_not_taken_for_people(app: ConsoleApp) -> None:
    group = "the night team on ward 7 @ St Mary's: “thank you”"
    answers = story_answers(community="1", title="Handover", action="A calm handover", recognised_group=group)
    text = feed(app, SETUP + "/cop story\n" + answers)
    assert f"  Team or group to thank: {group}\n" in text
    assert f"Recognising: {group}\n" in text
    [story] = stories(app)
    assert story.recognised_group == group and story.recognised_ids == []
    assert "DM to @the" not in text and "DM to @night" not in text


# --- group DMs --------------------------------------------------------------------------------------------------


def test_a_group_dm_is_one_message_labelled_with_its_people(app: ConsoleApp) -> None:
    out = app.out
    assert isinstance(out, io.StringIO)
    hello = Button("Say hello", "nope.hi", value="1")
    message = Message(text="*Introduction* <@alice> meet <@bob>\nA nurse \x1b[2J", buttons=(hello,))
    message_id = app.platform.send_group_dm(user_ids=["alice", "bob", "alice"], message=message)
    assert message_id == "m1"
    assert out.getvalue() == (
        "[m1] Group DM with @alice, @bob · copbot: *Introduction* @alice meet @bob\n"
        "    A nurse \\x1b[2J\n"
        "        [1] Say hello  (:click 1)\n"
    )
    with pytest.raises(PlatformError):
        app.platform.send_group_dm(user_ids=[], message=message)


def test_only_the_group_sees_its_buttons_and_may_answer_in_it(app: ConsoleApp) -> None:
    app.platform.send_group_dm(
        user_ids=["alice", "bob"], message=Message(text="Hello both", buttons=(Button("Hi", "nope.hi", value="1"),))
    )
    text = feed(app, ":as carol\n:click 1\n:reply m1 let me in\n:as bob\n:reply m1 Hello Alice, I'm Bob\n:click 1\n")
    assert "(no such button)" in text  # carol can't see it
    assert "(that group DM isn't yours: :as one of its people first)" in text
    assert "let me in" not in text.split("(that group DM", 1)[1]
    assert "[m2] Group DM with @alice, @bob (reply to m1) · @bob: Hello Alice, I'm Bob\n" in text
    assert "That button no longer does anything" in text  # bob's click reached copbot


def test_an_introduction_round_opens_one_group_dm_per_group(app: ConsoleApp) -> None:
    """Needs the core's introductions to send through `send_group_dm` (issue 12)."""
    setup = (
        "/cop create Falls prevention | What works\n/cop profile profession=doctor\n"
        ":as sam\n/cop join falls-prevention\n/cop profile profession=nurse\n"
        ":as priya\n/cop join falls-prevention\n/cop profile profession=pharmacist\n:as you\n"
    )
    text = feed(app, setup + "/cop intros run in:falls-prevention\n")
    [group] = [line for line in text.splitlines() if "Group DM with " in line]
    assert all(f"@{person}" in group.split(" · ", 1)[0] for person in ("you", "sam", "priya"))
    assert "Introduction · Falls prevention" in group
    assert "DM to @sam · copbot: *Introduction ·" not in text


# --- lines a terminal can't take ----------------------------------------------------------------------------------


def test_a_100000_character_answer_is_asked_again_and_nothing_typed_is_lost(app: ConsoleApp) -> None:
    answers = story_answers(
        community="1", title="x" * 100_000 + "\nBay tags", action="We tag bays",
        recognised="@" + "s" * 100_000 + "\n@sam\x00\n@sam",
    )  # fmt: skip
    text = feed(app, SETUP + "/cop story\n" + answers + "/cop stories bay\n")
    assert "  (that is 100,000 characters; the console takes up to 10,000 in one line; please answer again)\n" in text
    assert "  (that is 100,001 characters; the console takes up to 10,000 in one line; please answer again)\n" in text
    assert "control characters (NUL) the console doesn't accept; please answer again" in text
    assert "x" * 100 not in text and "s" * 100 not in text and "\x00" not in text
    [story] = stories(app)
    assert (story.title, story.action, story.recognised_ids) == ("Bay tags", "We tag bays", ["sam"])
    assert "*#1 Bay tags*" in text  # the console went on to the next command


def test_invisible_reordering_marks_in_an_answer_are_shown_not_acted_on(app: ConsoleApp) -> None:
    text = feed(app, SETUP + "/cop story\n" + story_answers(community="1", title="Bay \u202etags", action="A"))
    assert "  Title: Bay \\u202etags\n" in text and "\u202e" not in text


def test_every_field_empty_asks_for_what_is_required(app: ConsoleApp) -> None:
    # Community (kept: this channel's), title emptied and left empty, situation, action emptied, then everything
    # else emptied but who may see it, which must be someone.
    answers = "\n-\n\nBay tags\n-\n-\nWe tag bays\n-\n-\n-\n-\n-\n-\n\n-\n"
    text = feed(app, SETUP + ":in #cop-falls-prevention\n/cop story\n" + answers)
    assert "  (*Title* is required; please answer again)\n" in text
    assert "  (*What was done* is required; please answer again)\n" in text
    [story] = stories(app)
    assert (story.title, story.action, story.situation, story.recognised_ids, story.recognised_group) == (
        "Bay tags", "We tag bays", "", [], ""
    )  # fmt: skip


def test_every_field_at_its_longest_is_kept_whole(app: ConsoleApp) -> None:
    people = [f"p{i}" for i in range(21)]
    joins = "".join(f":as {p}\n/cop join falls-prevention\n" for p in people)
    setup = "/cop create Falls prevention | What works\n" + joins
    long_text = ("We tag the bays " * 200)[:3000]
    answers = story_answers(
        community="1", title="T" * 150, situation=long_text, action=long_text, why_it_works=long_text,
        impact=long_text, recognised=" ".join(f"@{p}" for p in people), recognised_group="g" * 200,
        themes=",".join(str(n) for n in range(1, 19)), consent_scope="2", show_name="yes",
    )  # fmt: skip
    text = feed(app, setup + ":as you\n/cop story\n" + answers + " ".join(f"@{p}" for p in people[:20]) + "\n")
    assert "! People to recognise: Recognise at most 20 people in one story." in text
    assert "· please answer *People to recognise* again; your other answers are kept" in text
    [story] = stories(app)
    assert (len(story.title), len(story.action), len(story.impact), len(story.recognised_group)) == (150, 3000, 3000,
                                                                                                      200)  # fmt: skip
    assert story.action == long_text.strip() and story.recognised_ids == people[:20]
    assert len(story.theme_ids) == 18


def test_a_name_too_long_or_not_a_console_id_is_refused_by_as(app: ConsoleApp) -> None:
    text = feed(app, f":as {'a' * 65}\n:as zoë\n:as @{'b' * 64}\n:whoami\n")
    assert text.count("(usage: :as <name>, e.g. :as sam — up to 64 letters, digits, - and _)") == 2
    assert f"· you are @{'b' * 64}, in a DM" in text  # the longest name anyone can be mentioned by
