"""The console adapter: the real `copbot console` from a pipe, state across runs, and start-up errors."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.clock import parse_duration
from bot.config import load_settings
from bot.console.app import ConsoleApp, build_console


def run_copbot(args: list[str], stdin: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "TEAMS_", "COPBOT_"))}
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        timeout=60,
    )


def test_pipe_run_answers_and_exits_at_end_of_input(tmp_path: Path) -> None:
    result = run_copbot(
        ["console"],
        "/cop create Falls prevention | Sharing what works\n/cop join falls-prevention\n/cop list\n",
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "channel #cop-falls-prevention created" in out
    assert "Created *Falls prevention* with the channel `cop-falls-prevention`" in out
    assert "already a member of *Falls prevention*" in out
    assert "*Falls prevention* — Sharing what works" in out and "1 member" in out
    assert (tmp_path / "copbot.db").exists()


def test_a_second_run_sees_the_first_runs_communities(tmp_path: Path) -> None:
    run_copbot([], "/cop create Sepsis | Spotting it early\n", tmp_path)
    second = run_copbot([], ":as sam\n/cop join sepsis\n/cop list\n:in #cop-sepsis\n/cop leave\n", tmp_path)
    assert second.returncode == 0, second.stderr
    assert "@sam joined #cop-sepsis" in second.stdout
    assert "2 members" in second.stdout
    assert "You've left *Sepsis*" in second.stdout


def test_unreadable_database_is_a_clear_start_up_error(tmp_path: Path) -> None:
    (tmp_path / "copbot.db").write_bytes(b"not sqlite at all " * 200)
    result = run_copbot(["console"], "/cop list\n", tmp_path)
    assert result.returncode == 3
    assert "cannot use the database at sqlite:///copbot.db: file is not a database" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_env_file_stops_start_up_with_every_problem(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("COPBOT_TIMEZONE=Middle/Earth\nCOPBOT_HOLIDAYS=mordor\n")
    result = run_copbot(["console"], "", tmp_path)
    assert result.returncode == 2
    assert "2 configuration problem(s)" in result.stderr
    assert "COPBOT_TIMEZONE" in result.stderr and "COPBOT_HOLIDAYS" in result.stderr


def test_help_lists_the_commands(tmp_path: Path) -> None:
    result = run_copbot(["--help"], "", tmp_path)
    assert result.returncode == 0
    for word in ("console", "db", "config"):
        assert word in result.stdout


@pytest.fixture
def console(tmp_path: Path) -> tuple[ConsoleApp, io.StringIO]:
    out = io.StringIO()
    settings = load_settings({"DATABASE_URL": f"sqlite:///{tmp_path}/c.db"}, env_file=None)
    return build_console(settings, inp=io.StringIO(), out=out, interactive=False), out


def feed(app: ConsoleApp, text: str) -> None:
    app.inp = io.StringIO(text)
    app.run()


def test_meta_commands_act_as_people_post_click_and_advance(console: tuple[ConsoleApp, io.StringIO]) -> None:
    app, out = console
    feed(
        app,
        "/cop create Falls\n:as Sam\n:whoami\n:in #cop-falls\n:post we tried a falls huddle at 2pm\n"
        ":react m3\n:as you\n/cop archive falls\n:click 1\n:advance 90m\n:advance soon\n:nonsense\n",
    )
    text = out.getvalue()
    assert "you are now @sam" in text
    assert "you are @sam, in a DM" in text
    assert "#cop-falls · @sam: we tried a falls huddle at 2pm" in text
    assert "I've sent you a private message to check the story" in text  # :react with the story emoji
    assert "[1] Archive it" in text
    assert "Archived *Falls*" in text
    assert "nothing was due" in text
    assert "'soon' is not a duration" in text
    assert "unknown console command :nonsense" in text


def test_profile_form_is_asked_field_by_field(console: tuple[ConsoleApp, io.StringIO]) -> None:
    app, out = console
    feed(app, "/cop profile\nPhysiotherapist\nExample NHS Trust\n\n/cop profile\n")
    text = out.getvalue()
    assert "Profession: Physiotherapist" in text
    assert "Organisation: Example NHS Trust" in text
    assert "form cancelled" in text  # the second form met the end of input


def test_durations() -> None:
    assert parse_duration("90m").total_seconds() == 5400
    assert parse_duration("2 hours").total_seconds() == 7200
    assert parse_duration("1w").days == 7
    with pytest.raises(ValueError, match="like 2h or 1d"):
        parse_duration("tomorrow")
