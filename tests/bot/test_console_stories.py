"""Stories in the console: the form asked field by field, :react and :shortcut with the author's consent, search,
and exports written under ./exports/."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from bot.config import load_settings
from bot.console.app import ConsoleApp, build_console


@pytest.fixture
def console(tmp_path: Path) -> tuple[ConsoleApp, io.StringIO]:
    out = io.StringIO()
    settings = load_settings({"DATABASE_URL": f"sqlite:///{tmp_path}/c.db"}, env_file=None)
    return build_console(settings, inp=io.StringIO(), out=out, interactive=False, exports_dir=tmp_path / "exports"), out


def feed(app: ConsoleApp, text: str) -> str:
    app.inp = io.StringIO(text)
    app.run()
    out = app.out
    assert isinstance(out, io.StringIO)
    return out.getvalue()


SETUP = "/cop create Falls prevention | What works\n:as sam\n/cop join falls-prevention\n"
# Answers to the story form, one per field: community, title, situation, action, why, impact, people, team or
# group (none), themes, who may see it (the default), show my name.
FORM = (
    "falls-prevention\nBay tags\nNight falls\nWe tag bays at risk\nEveryone sees it\nFewer falls\n@sam\n\n"
    + "falls\n\nyes\n"
)


def test_story_form_is_asked_field_by_field_and_posted(console: tuple[ConsoleApp, io.StringIO]) -> None:
    app, _ = console
    text = feed(app, SETUP + ":as you\n/cop story\n" + FORM + "/cop stories bay\n")
    assert "· Share a story (empty answer keeps what is shown in [brackets], - empties it)" in text
    assert "What was done: We tag bays at risk" in text
    assert "#cop-falls-prevention · copbot: *Bay tags*" in text  # the card, with its title
    assert "Shared by: @you" in text and "DM to @sam · copbot: @you recognised you" in text
    assert "Your story *Bay tags* (#1) is shared in #cop-falls-prevention" in text
    assert "*#1 Bay tags* — Falls prevention" in text


def test_react_asks_the_author_and_click_approves(console: tuple[ConsoleApp, io.StringIO]) -> None:
    app, _ = console
    text = feed(
        app,
        SETUP + ":post #cop-falls-prevention We moved the commode nearer the bed\n"
        ":as you\n:react m4\n:react m4\n:as sam\n:click 1\n/cop stories commode\n",
    )
    assert "· @you reacted :bulb: to m4" in text
    assert "DM to @sam · copbot: *May we share your story?*" in text
    assert "I've asked @sam to approve the story (#1)" in text
    assert "already waiting for its author" in text
    assert "Your story *We moved the commode nearer the bed* (#1) is shared in #cop-falls-prevention" in text
    assert "*#1 We moved the commode nearer the bed*" in text


def test_shortcut_prefills_the_form(console: tuple[ConsoleApp, io.StringIO]) -> None:
    app, _ = console
    text = feed(
        app,
        SETUP
        + ":post #cop-falls-prevention Red trays for people who need help eating\n"
        + ":shortcut m4\n"
        + "\n" * 11,
    )
    assert "Title: Red trays for people who need help eating" in text
    assert "Your story *Red trays for people who need help eating* (#1) is shared" in text  # sam is the author


def test_console_bad_input(console: tuple[ConsoleApp, io.StringIO]) -> None:
    app, _ = console
    text = feed(app, SETUP + ":react m99\n:shortcut\n:react m1\n:react m2 thumbsup\n")
    assert "(usage: :react m3 [emoji]" in text and "(usage: :shortcut m3" in text
    assert "That message is from a bot" in text  # m1 is copbot's welcome


def test_export_writes_a_file_under_exports(console: tuple[ConsoleApp, io.StringIO], tmp_path: Path) -> None:
    app, _ = console
    text = feed(app, SETUP + ":as you\n/cop story\n" + FORM + "/cop export csv in:falls-prevention\n")
    [written] = (tmp_path / "exports").iterdir()
    assert written.name.startswith("stories-falls-prevention-") and written.suffix == ".csv"
    assert "Bay tags" in written.read_text(encoding="utf-8-sig")
    assert f"→ {written}" in text


def test_a_story_with_an_nhs_number_is_refused_in_the_console(console: tuple[ConsoleApp, io.StringIO]) -> None:
    app, _ = console
    form = FORM.replace("Night falls", "Patient 943 476 5919 fell")
    text = feed(app, SETUP + ":as you\n/cop story\n" + form)
    assert "The situation: This looks like it contains an NHS number" in text
    assert "· please answer *The situation* again; your other answers are kept" in text
    assert "is shared in" not in text and text.rstrip().endswith("· form cancelled")  # input ended at the re-ask
