"""What people see in the console: typed text printed as typed, mentions as names, and nothing that drives the
terminal (ANSI escapes, carriage returns, NUL, bidirectional overrides) ever written raw."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from bot.config import load_settings
from bot.console.app import ConsoleApp, build_console
from bot.console.platform import ConsolePlatform, printable
from handlers.errors import PlatformError
from handlers.ports import Button, Message, Section
from tests.seen import console_seen, seen_console

CONTROLS = {
    "\x1b[2J\x1b[31mred": "\\x1b[2J\\x1b[31mred",  # clear the screen, then red
    "over\rwrite": "over\\x0dwrite",
    "nul\x00byte": "nul\\x00byte",
    "csi\x9b31m": "csi\\x9b31m",  # the one-byte C1 form of ESC [
    "abc\u202edcb": "abc\\u202edcb",  # right-to-left override
    "bell\x07": "bell\\x07",
}


@pytest.mark.parametrize(("typed", "shown"), CONTROLS.items(), ids=list(CONTROLS.values()))
def test_control_characters_are_shown_visibly_never_acted_on(typed: str, shown: str) -> None:
    out = io.StringIO()
    platform = ConsolePlatform(out)
    platform.send_dm(
        user_id="sam", message=Message(text=f"Story: {typed}", title=f"T {typed}", sections=(Section(typed),))
    )
    platform.know_channel(channel_id="C-x", name="x")
    platform.human_post(channel_id="C-x", author="sam", text=typed)

    printed = console_seen(out.getvalue())  # raises if a raw control character reached the terminal

    assert printed.count(shown) == 3


def test_line_breaks_and_tabs_are_kept() -> None:
    assert printable("a\tb\nc") == "a\tb\nc"


@pytest.mark.parametrize(
    "hostile", ["<!channel> Falls", "<https://evil.example|click>", "&amp; <b>x</b>", "5* staff", "[x](https://e)"]
)
def test_typed_markup_is_printed_as_typed(hostile: str) -> None:
    message = Message(text=f"Hello {hostile}", buttons=(Button(hostile, "x.y"),))

    assert seen_console(message) == f"Hello {hostile}\n[1] {hostile}  (:click 1)"


def test_mentions_become_names_and_sections_are_the_body() -> None:
    out = io.StringIO()
    platform = ConsolePlatform(out)
    platform.know_channel(channel_id="C-falls", name="cop-falls")
    message = Message(
        text="only the notification",
        title="Introduction · Falls",
        sections=(Section("*Meet <@sam>* in <#C-falls> and <#C-gone|old-name>"), Section("", fields=(("Who", "x"),))),
    )

    assert platform.render(message) == (
        "*Introduction · Falls*\n    *Meet @sam* in #cop-falls and #old-name\n    Who: x"
    )
    assert "notification" not in seen_console(message)
    assert seen_console(Message(text="The body", title="Digest")) == "*Digest*\nThe body"


def test_an_updated_message_is_printed_again_and_remembered() -> None:
    out = io.StringIO()
    platform = ConsolePlatform(out)
    platform.know_channel(channel_id="C-falls", name="cop-falls")
    posted = platform.post(channel_id="C-falls", message=Message(text="*Bay tags*"))

    platform.update_message(channel_id="C-falls", message_id=posted, message=Message(text="_Withdrawn \x1b[2J_"))

    assert console_seen(out.getvalue()).splitlines()[-1] == "[m1] (edited) #cop-falls · copbot: _Withdrawn \\x1b[2J_"
    assert platform.posts[posted].text == "_Withdrawn \x1b[2J_"
    with pytest.raises(PlatformError):
        platform.update_message(channel_id="C-falls", message_id="m9", message=Message(text="x"))


def test_console_seen_refuses_raw_control_characters() -> None:
    with pytest.raises(AssertionError, match="U\\+001B"):
        console_seen("[m1] DM · copbot: \x1b[2Jgone")
    assert console_seen("[m1] a\n    b  \n\n") == "[m1] a\nb"


def test_a_whole_console_session_with_hostile_input_prints_nothing_raw(tmp_path: Path) -> None:
    out = io.StringIO()
    settings = load_settings({"DATABASE_URL": f"sqlite:///{tmp_path}/c.db"}, env_file=None)
    app: ConsoleApp = build_console(settings, inp=io.StringIO(), out=out, interactive=False, exports_dir=tmp_path)
    app.inp = io.StringIO(
        "/cop create Falls \x1b[31mred | what \x1b]0;title\x07works\n"
        "/cop create Falls <!channel> | what <b>works</b> &amp; more\n"
        ":post #cop-falls-channel hello \x1b[2J\r there\n"
        ":post #cop-falls-channel hello <@sam> *there*\n"
        "/cop list\n"
    )
    app.run()

    printed = console_seen(out.getvalue())  # raises if anything raw reached the terminal

    assert "*Falls <!channel>* — what <b>works</b> &amp; more" in printed
    assert "#cop-falls-channel · @you: hello <@sam> *there*" in printed  # a person's post, as they typed it
