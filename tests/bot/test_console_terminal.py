"""The console as a terminal: text taken exactly as typed, `@name` mentions, lines it can't take, forms that keep
every answer when one field is wrong, and readline history on a real terminal."""

from __future__ import annotations

import io
import os
import select
import signal
import sqlite3
import struct
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import pytest
from sqlmodel import Session
from sqlmodel import select as sql_select

from bot.config import load_settings
from bot.console import terminal
from bot.console.app import ConsoleApp, build_console
from bot.console.forms import people_ids, refused_fields
from bot.console.text import command_mentions, line_problem
from handlers.ports import Form, FormField, Message, Reply
from storage.models import Community, Member
from storage.stories import Story
from tests.bot.test_console import run_copbot
from tests.bot.test_console_stories import feed

QUOTED = "Don't forget \"read-back\": we've put the ‘huddle’ sheet by the desk"


@pytest.fixture
def app(tmp_path: Path) -> ConsoleApp:
    settings = load_settings({"DATABASE_URL": f"sqlite:///{tmp_path}/c.db"}, env_file=None)
    return build_console(
        settings, inp=io.StringIO(), out=io.StringIO(), interactive=False, exports_dir=tmp_path / "exports"
    )


@pytest.fixture(params=["core validation", "refusal reply only"])
def either(request: pytest.FixtureRequest, app: ConsoleApp, monkeypatch: pytest.MonkeyPatch) -> ConsoleApp:
    """The console with the core's `validate_submission`, and as it was before the core had one: a field is then
    found in the refusal the submission answers with."""
    if request.param == "refusal reply only":
        monkeypatch.setattr(app.container.bot, "validate_submission", None, raising=False)
    return app


def stories(app: ConsoleApp) -> list[Story]:
    with Session(app.container.engine) as db:
        return list(db.exec(sql_select(Story).where(Story.status == "published")).all())


def member(app: ConsoleApp, user_id: str) -> Member:
    with Session(app.container.engine) as db:
        found = db.exec(sql_select(Member).where(Member.user_id == user_id)).one()
        db.expunge(found)
        return found


SETUP = "/cop create Falls prevention | What works\n:as sam\n/cop join falls-prevention\n:as you\n"


def story_answers(**answers: str) -> str:
    """Answers to the story form, in its order (community first); empty keeps what the form shows."""
    order = ("community", "title", "situation", "action", "why_it_works", "impact", "recognised", "recognised_group",
             "themes", "consent_scope", "show_name")  # fmt: skip
    unknown = set(answers) - set(order)
    assert not unknown, unknown
    return "".join(answers.get(name, "") + "\n" for name in order)


# --- text taken as typed --------------------------------------------------------------------------------------


def test_acceptance_post_from_a_pipe_keeps_quotes_and_apostrophes(tmp_path: Path) -> None:
    result = run_copbot(["console"], ':post Don\'t forget "read-back"\n', tmp_path)
    assert result.returncode == 0, result.stderr
    assert '[m1] DM with copbot · @you: Don\'t forget "read-back"\n' in result.stdout
    # …and saved as a story from the message, it is stored word for word.
    captured = run_copbot(
        ["console"],
        '/cop create Falls\n:post Don\'t forget "read-back"\n:shortcut m3\n' + story_answers(community="1"),
        tmp_path,
    )
    assert captured.returncode == 0, captured.stderr
    assert 'Your story *Don\'t forget "read-back"* (#1) is shared in #cop-falls' in captured.stdout
    with sqlite3.connect(tmp_path / "copbot.db") as db:
        assert db.execute("SELECT title, action FROM story").fetchall() == [
            ('Don\'t forget "read-back"', 'Don\'t forget "read-back"')
        ]


def test_a_posted_message_becomes_a_story_word_for_word(app: ConsoleApp) -> None:
    text = feed(
        app,
        SETUP + f":post #cop-falls-prevention   {QUOTED}\n:shortcut m4\n" + story_answers(),
    )
    assert f"#cop-falls-prevention · @you: {QUOTED}\n" in text
    assert f"What was done: {QUOTED}\n" in text
    [story] = stories(app)
    assert story.action == QUOTED
    assert story.title == "Don't forget \"read-back\": we've put the ‘huddle’ sheet by the desk"


def test_reply_and_form_answers_are_kept_as_typed(app: ConsoleApp) -> None:
    text = feed(
        app,
        SETUP
        + "/cop story\n"
        + story_answers(community="1", title='It\'s "safe"', action="  Ward 7's   'red tray'  ")
        + ':reply m1 I\'d say "yes"\n',
    )
    [story] = stories(app)
    assert story.title == 'It\'s "safe"'
    assert story.action == "Ward 7's   'red tray'"  # inner spaces kept; the core trims the ends
    assert '(reply to m1) · @you: I\'d say "yes"\n' in text


def test_post_in_a_dm_goes_to_copbot_and_usage_when_empty(app: ConsoleApp) -> None:
    text = feed(app, ":post\n:post #nowhere hello\n:post hello there\n")
    assert "(usage: :post #channel your message" in text
    assert "(no channel #nowhere)" in text
    assert "[m1] DM with copbot · @you: hello there\n" in text


# --- @name mentions -------------------------------------------------------------------------------------------


def test_facilitator_add_with_at_name_as_help_shows_it(app: ConsoleApp) -> None:
    text = feed(
        app, SETUP + ":as priya\n/cop join falls-prevention\n:as you\n/cop facilitator add @Priya in:falls-prevention\n"
    )
    assert "@priya is now a facilitator of *Falls prevention*" in text


def test_command_mentions_leave_quotes_and_free_text_alone() -> None:
    assert command_mentions("/cop facilitator add @priya in:falls") == "/cop facilitator add <@priya> in:falls"
    assert command_mentions('/cop create "Ward @7" | ask @sam') == '/cop create "Ward @7" | ask @sam'
    assert command_mentions('/cop x name="@a b" @b, me@nhs.uk') == '/cop x name="@a b" @b, me@nhs.uk'
    assert people_ids("@sam, @Priya and <@u7> the-team") == "sam priya u7 the-team"  # ids, never mentions or names


def test_known_people_in_a_message_become_mentions_for_the_core(app: ConsoleApp) -> None:
    text = feed(
        app,
        SETUP
        + ":post #cop-falls-prevention thanks @sam, see the rota@ward or @home\n"
        + ":shortcut m4\n"
        + story_answers(),
    )
    # The transcript shows what was typed; the core saw `<@sam>`, so Sam is pre-filled as a person to recognise.
    assert "· @you: thanks @sam, see the rota@ward or @home\n" in text
    assert "People to recognise: @sam\n" in text
    assert "What was done: thanks @sam, see the rota@ward or @home\n" in text  # shown as typed, not `<@sam>`
    [story] = stories(app)
    assert story.recognised_ids == ["sam"]
    assert story.action == "thanks <@sam>, see the rota@ward or @home"
    assert "DM to @sam · copbot: A colleague recognised you in a story" in text


def test_people_field_answers_are_their_ids(app: ConsoleApp) -> None:
    setup = SETUP + ":as priya\n/cop join falls-prevention\n:as you\n"
    feed(app, setup + "/cop story\n" + story_answers(community="1", title="T", action="A", recognised="@Sam, @priya"))
    [story] = stories(app)
    assert story.recognised_ids == ["sam", "priya"]


# --- lines the console can't take ------------------------------------------------------------------------------


def test_huge_nul_and_control_lines_get_a_clear_reply_and_the_console_goes_on(app: ConsoleApp) -> None:
    started = time.monotonic()
    text = feed(
        app,
        "/cop " + "x" * 100_000 + "\n:post " + "y" * 100_000 + "\n/cop help\x00\n:post hi \x1b[31mred\n/cop list\r\n",
    )
    assert time.monotonic() - started < 10
    assert "(that is 100,005 characters; the console takes up to 10,000 in one line; nothing was done)" in text
    assert "(that is 100,006 characters" in text
    assert "control characters (NUL)" in text and "control characters (Escape)" in text
    assert "y" * 100 not in text and "\x1b" not in text
    assert "There are no communities yet" in text  # the CRLF line still ran


def test_line_problem_accepts_tabs_and_unicode() -> None:
    assert line_problem("a\tb “quoted” — café 🙂") is None
    assert line_problem("bell\x07") is not None and "U+0007" in (line_problem("bell\x07") or "")


# --- forms ----------------------------------------------------------------------------------------------------


def test_profile_time_zone_typo_keeps_profession_and_organisation(either: ConsoleApp) -> None:
    app = either
    text = feed(app, "/cop profile\nStaff nurse\nExample NHS Trust\nEurope/Lodnon\nEurope/London\n")
    assert "isn't a time zone I know" in text
    assert "· please answer *Time zone* again; your other answers are kept" in text
    assert text.count("\n  Profession: ") == 1  # asked once: never again
    assert "Profile saved" in text
    saved = member(app, "you")
    assert (saved.profession, saved.organisation, saved.timezone) == ("Staff nurse", "Example NHS Trust",
                                                                      "Europe/London")  # fmt: skip


def test_story_with_an_nhs_number_re_asks_only_that_field(either: ConsoleApp) -> None:
    app = either
    answers = story_answers(
        community="1", title="Bay tags", situation="Patient 943 476 5919 fell", action="We tag bays",
        why_it_works="Everyone sees it", themes="falls",
    )  # fmt: skip
    text = feed(app, SETUP + "/cop story\n" + answers + "Night falls on the ward\n/cop stories bay\n")
    refusal = text.split("Show my name: \n", 1)[1].split("\n", 1)[0]  # the line after the last answer
    assert "The situation" in refusal and "NHS number" in refusal and "943" not in refusal
    assert "What was done" not in refusal
    assert "· please answer *The situation* again; your other answers are kept" in text
    [story] = stories(app)
    assert (story.title, story.situation, story.action, story.why_it_works, story.theme_ids) == (
        "Bay tags", "Night falls on the ward", "We tag bays", "Everyone sees it", ["falls"]
    )  # fmt: skip
    assert "943" not in story.situation
    assert "*#1 Bay tags*" in text  # the next command ran as a command, not as an answer


def test_choices_are_listed_and_taken_by_number_value_or_label(app: ConsoleApp) -> None:
    answers = story_answers(community="1", title="T", action="A", themes="2, teamwork, Human factors, 2",
                            consent_scope="Everyone in every community")  # fmt: skip
    text = feed(app, SETUP + "/cop story\n" + answers)
    assert "  Community: choose one by number or name\n    1. Falls prevention\n" in text
    assert "  Themes: choose one or more by number or name, separated by commas\n    1. " in text
    assert "    3. Only the facilitators and patient safety team\n" in text
    assert "Themes: Handover, Teamwork, Human factors, Handover\n" in text
    [story] = stories(app)
    assert story.theme_ids[:2] == ["handover", "teamwork"] and len(story.theme_ids) == 3
    assert story.consent_scope == "all_communities"


def test_a_preselected_community_is_kept_and_numbers_are_the_listed_ones(app: ConsoleApp) -> None:
    # Sepsis is community 1 and Falls community 2, but Sam's own community (Falls) is listed first.
    setup = "/cop create Sepsis\n/cop create Falls prevention\n:as sam\n/cop join falls-prevention\n"
    text = feed(
        app,
        setup + ":in #cop-falls-prevention\n/cop story\n" + story_answers(title="Kept", action="A")
        + "/cop story\n" + story_answers(community="2", title="Chosen", action="A"),
    )  # fmt: skip
    assert "  Community: choose one by number or name\n    1. Falls prevention\n    2. Sepsis\n" in text
    with Session(app.container.engine) as db:
        where = {s.title: db.get(Community, s.community_id).name for s in stories(app)}  # type: ignore[union-attr]
    assert where == {"Kept": "Falls prevention", "Chosen": "Sepsis"}


def test_a_wrong_theme_is_asked_again_with_the_rest_kept(either: ConsoleApp) -> None:
    app = either
    answers = story_answers(community="falls-prevention", title="Huddles", action="Daily huddle", themes="handovr")
    text = feed(app, SETUP + "/cop story\n" + answers + "2\n")
    assert "isn't a theme" in text
    assert "· please answer *Themes* again" in text
    [story] = stories(app)
    assert (story.title, story.action, story.theme_ids) == ("Huddles", "Daily huddle", ["handover"])


def test_required_and_too_long_answers_are_asked_again_at_once(app: ConsoleApp) -> None:
    answers = story_answers(community="1", title="x" * 151 + "\n\nShort title", action="\x1b[2J\nA")
    text = feed(app, SETUP + "/cop story\n" + answers)
    assert "(*Title* takes up to 150 characters; that was 151; please answer again)" in text
    assert "(*Title* is required; please answer again)" in text
    assert "control characters (Escape)" in text
    [story] = stories(app)
    assert (story.title, story.action) == ("Short title", "A")


def test_dash_empties_a_prefilled_field(app: ConsoleApp) -> None:
    feed(
        app, SETUP + ":post #cop-falls-prevention thanks @sam for this\n:shortcut m4\n" + story_answers(recognised="-")
    )
    [story] = stories(app)
    assert story.recognised_ids == []


def test_end_of_input_in_a_re_ask_cancels(either: ConsoleApp) -> None:
    app = either
    text = feed(app, "/cop profile\nNurse\nTrust\nMars/Olympus\n")
    assert "please answer *Time zone* again" in text and text.rstrip().endswith("· form cancelled")
    assert member(app, "you").profession is None


def test_a_form_refused_again_and_again_gives_up_and_the_console_goes_on(either: ConsoleApp) -> None:
    app = either
    text = feed(app, "/cop profile\nNurse\nTrust\nMars/A\nMars/B\nMars/C\nEurope/Paris\n/cop profile\nN\nT\nMars/D\n"
                     "Mars/E\nMars/F\nMars/G\n/cop list\n")  # fmt: skip
    assert member(app, "you").timezone == "Europe/Paris"  # right at the third time of asking again
    assert text.count("please answer *Time zone* again") == 6
    assert text.count("· form not saved: it was refused too many times") == 1
    assert member(app, "you").profession == "Nurse"
    assert "There are no communities yet" in text


def test_core_validation_when_present_re_asks_exactly_the_fields_it_names(
    app: ConsoleApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[dict[str, str]] = []

    def validate_submission(
        *, actor: object, form_id: str, values: Mapping[str, str], context: str = ""
    ) -> dict[str, str]:
        seen.append(dict(values))
        errors = {}
        if values["title"] == "dull":
            errors["title"] = "give it a headline people will click"
        if "943" in values["impact"]:
            errors["impact"] = "looks like an NHS number"
        return errors

    monkeypatch.setattr(app.container.bot, "validate_submission", validate_submission, raising=False)
    answers = story_answers(community="1", title="dull", action="Huddle", impact="943 476 5919", recognised="@sam")
    text = feed(app, SETUP + "/cop story\n" + answers + "Safety huddles\nFewer falls\n")
    assert (
        "  ! Title: give it a headline people will click\n  ! The difference it made: looks like an NHS number" in text
    )
    assert "· please answer *Title*, *The difference it made* again" in text
    assert [v["title"] for v in seen] == ["dull", "Safety huddles"]
    assert seen[0]["recognised"] == "sam" and seen[0]["community"].isdigit()
    [story] = stories(app)
    assert (story.title, story.action, story.impact) == ("Safety huddles", "Huddle", "Fewer falls")


def test_a_reply_that_is_not_a_refusal_naming_a_field_asks_nothing_again() -> None:
    form = Form("profile", "Your profile", (FormField("timezone", "Time zone"), FormField("profession", "Profession")))
    values = {"timezone": "Mars/Base", "profession": "Nurse"}
    named = refused_fields(form, [Reply.private("`Mars/Base` isn't a time zone I know.\nFor example: `Nurse`")], values)
    assert [f.name for f in named] == ["timezone"]  # the example is the right form, not the wrong answer
    saved = Reply(message=Message(text="Your profile is saved: *Time zone*", title="Profile saved"))
    assert refused_fields(form, [saved], values) == []
    assert refused_fields(form, [Reply.private("That form has expired; please open it again.")], values) == []
    two = [Reply.private("*Time zone*"), Reply.private("*Profession*")]
    assert refused_fields(form, two, values) == []


# --- a real terminal --------------------------------------------------------------------------------------------


def test_without_readline_a_terminal_still_reads_lines_and_keeps_no_history(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stdin, stdout = io.StringIO("/cop list\r\n:quit\n"), io.StringIO()
    monkeypatch.setattr(sys, "stdin", stdin)
    monkeypatch.setattr(sys, "stdout", stdout)
    monkeypatch.setattr(terminal, "_load_readline", lambda: None)
    settings = load_settings({"DATABASE_URL": f"sqlite:///{tmp_path}/c.db"}, env_file=None)
    history = tmp_path / "history"
    app = build_console(settings, inp=stdin, out=stdout, interactive=True, history_file=history)
    assert app.run() == 0
    assert "you> [m1] only @you · copbot: There are no communities yet" in stdout.getvalue()
    assert not history.exists()


def _read_until(fd: int, wanted: bytes, *, seen: bytearray, timeout: float = 30) -> None:
    """Read the terminal until `wanted` comes, then forget everything up to it (so the next wait looks after it)."""
    deadline = time.monotonic() + timeout
    while wanted not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{wanted!r} never came; got {bytes(seen[-2000:])!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the child closed the terminal
                chunk = b""
            if not chunk:
                raise AssertionError(f"terminal closed before {wanted!r}; got {bytes(seen[-2000:])!r}")
            seen += chunk
    del seen[: seen.index(wanted) + len(wanted)]


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_on_a_terminal_readline_recalls_commands_and_keeps_a_private_history(tmp_path: Path) -> None:
    pytest.importorskip("readline")
    import fcntl
    import termios

    master, slave = os.openpty()

    def controlling_terminal() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # a shell may start tests with Ctrl-C ignored

    environ = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "TEAMS_", "COPBOT_"))}
    environ.update(HOME=str(tmp_path), TERM="dumb", PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    child = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "console"],
        stdin=slave, stdout=slave, stderr=subprocess.PIPE, cwd=tmp_path, env=environ, close_fds=True,
        # Its own session with the terminal as its controlling one, so Ctrl-C reaches it as it would a person's.
        start_new_session=True, preexec_fn=controlling_terminal,
    )  # fmt: skip
    os.close(slave)
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 400, 0, 0))  # wide: prompts are long
    seen = bytearray()
    try:
        _read_until(master, b"you> ", seen=seen)
        os.write(master, b"/cop create Falls\n")
        _read_until(master, b"Created *Falls*", seen=seen)
        _read_until(master, b"you> ", seen=seen)
        os.write(master, b"/cop list\n")
        _read_until(master, b"1 member", seen=seen)
        _read_until(master, b"you> ", seen=seen)
        os.write(master, b"\x1b[A\n")  # the up arrow: the last command again
        _read_until(master, b"1 member", seen=seen)
        _read_until(master, b"you> ", seen=seen)
        os.write(master, b"/cop profile\n")
        _read_until(master, b"Healthcare assistant) []: ", seen=seen)
        os.write(master, b"Ward nurse 943 476 5919\n")
        _read_until(master, b"organisation) []: ", seen=seen)
        os.write(master, b"\x03")  # Ctrl-C in a form cancels the form, not the console
        _read_until(master, b"form cancelled", seen=seen)
        _read_until(master, b"you> ", seen=seen)
        os.write(master, b":post NHS number 943 476 5919\n")
        _read_until(master, b"@you: NHS number", seen=seen)
        _read_until(master, b"you> ", seen=seen)
        os.write(master, b"\x04")  # Ctrl-D: end of input
        assert child.wait(timeout=30) == 0, child.stderr.read() if child.stderr else ""
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        os.close(master)
    history = tmp_path / ".copbot_history"
    lines = history.read_text().splitlines()
    assert "/cop create Falls" in lines and "/cop list" in lines and "/cop profile" in lines
    assert not any("943" in line for line in lines)  # neither the form answer nor the flagged line
    assert history.stat().st_mode & 0o777 == 0o600
