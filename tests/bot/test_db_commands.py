"""`copbot db backup` and `copbot db check`: what an operator types, what they are told, and what is on disk after."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from bot.cli import EXIT_FAILED, main
from handlers.app import CopBot
from handlers.context import CoreConfig
from storage.engine import make_engine, migrate
from tests.conftest import Conversation, FixedClock
from tests.fakes.recording import RecordingPlatform
from tests.handlers.test_stories import story_values

TITLE = "Safety huddles before every shift"


@pytest.fixture
def env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No platform credentials: only DATABASE_URL, set by each test."""
    for name in ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "TEAMS_APP_ID", "COPBOT_PLATFORM", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "empty.env"
    path.write_text("")
    return path


def copbot(env_file: Path, monkeypatch: pytest.MonkeyPatch, database_url: str, *args: str) -> int:
    monkeypatch.setenv("DATABASE_URL", database_url)
    return main(["--env-file", str(env_file), "db", *args])


def conversation(engine: Engine, clock: FixedClock) -> Conversation:
    platform = RecordingPlatform()
    return Conversation(CopBot(engine=engine, platform=platform, clock=clock, config=CoreConfig()), platform)


@pytest.fixture
def live(tmp_path: Path, clock: FixedClock) -> Iterator[Path]:
    """A copbot database file with a community and a published story, still open (its latest writes in the WAL)."""
    path = tmp_path / "live" / "copbot.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    convo = conversation(engine, clock)
    convo.say("/cop create Falls prevention | Sharing what works")
    channel = next(iter(convo.platform.channels))
    convo.say("/cop story", channel=channel)
    community_id = convo.last[0].form.fields[0].initial  # type: ignore[union-attr]
    assert "is shared in" in convo.submit("story", story_values(community_id))
    yield path
    engine.dispose()


def test_a_backup_is_a_database_copbot_runs_on_with_the_same_communities_and_stories(
    live: Path, tmp_path: Path, env_file: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], clock: FixedClock,
) -> None:  # fmt: skip
    target = tmp_path / "backups" / "copbot-2026-11-25.db"
    target.parent.mkdir()

    assert copbot(env_file, monkeypatch, f"sqlite:///{live}", "backup", str(target)) == 0

    assert f"backed up {live} to {target}" in capsys.readouterr().out
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # no partial file left beside it
    restored = make_engine(f"sqlite:///{target}")
    migrate(restored)  # what copbot does at every start: nothing to do
    convo = conversation(restored, clock)
    assert "Falls prevention" in convo.say("/cop list")
    assert TITLE in convo.say("/cop stories huddles")
    restored.dispose()

    assert copbot(env_file, monkeypatch, f"sqlite:///{target}", "check") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == ["integrity: ok", "foreign keys: ok"]
    assert lines[2].startswith("migrations: ok (at head ")
    assert len(lines) == 3


def test_a_backup_never_replaces_a_file_unless_forced(
    live: Path, tmp_path: Path, env_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "copbot-backup.db"
    target.write_text("last week's backup\n")

    assert copbot(env_file, monkeypatch, f"sqlite:///{live}", "backup", str(target)) == EXIT_FAILED

    err = capsys.readouterr().err
    assert f"{target} exists already" in err and "--force" in err
    assert target.read_text() == "last week's backup\n"

    assert copbot(env_file, monkeypatch, f"sqlite:///{live}", "backup", str(target), "--force") == 0
    assert copbot(env_file, monkeypatch, f"sqlite:///{target}", "check") == 0


def test_a_backup_onto_the_database_itself_is_refused(
    live: Path, env_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    before = live.read_bytes()

    assert copbot(env_file, monkeypatch, f"sqlite:///{live}", "backup", str(live), "--force") == EXIT_FAILED

    assert "is the database itself" in capsys.readouterr().err
    assert live.read_bytes() == before


@pytest.mark.parametrize("where", ["missing folder", "a file, not a folder"])
def test_a_backup_to_a_folder_that_is_not_there_fails_with_a_message(
    where: str, live: Path, tmp_path: Path, env_file: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    parent = tmp_path / "nowhere"
    if where == "a file, not a folder":
        parent.write_text("")
    target = parent / "copbot.db"

    assert copbot(env_file, monkeypatch, f"sqlite:///{live}", "backup", str(target)) == EXIT_FAILED

    out, err = capsys.readouterr()
    expected = "does not exist" if where == "missing folder" else "is not a folder"
    assert err == f"copbot: backup not written: cannot write {target}: {parent} {expected}\n"
    assert "Traceback" not in out + err
    assert not target.exists()


def test_a_backup_into_a_folder_that_cannot_be_written_fails_with_a_message(
    live: Path, env_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # /sys refuses new files to everyone, root included (a chmod'ed folder would not stop root, who runs CI).
    folder = Path("/sys")
    assert copbot(env_file, monkeypatch, f"sqlite:///{live}", "backup", str(folder / "copbot-backup.db")) == EXIT_FAILED

    err = capsys.readouterr().err
    assert err.startswith(f"copbot: backup not written: cannot write in {folder}: ")
    assert "Traceback" not in err
    assert not (folder / "copbot-backup.db").exists()


def test_a_backup_of_a_database_that_is_not_there_says_so_and_creates_nothing(
    tmp_path: Path, env_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "typo" / "copbot.db"

    assert copbot(env_file, monkeypatch, f"sqlite:///{missing}", "backup", str(tmp_path / "b.db")) == EXIT_FAILED

    assert capsys.readouterr().err == f"copbot: no database at {missing} (check DATABASE_URL)\n"
    assert not missing.parent.exists()
    assert not (tmp_path / "b.db").exists()


def test_a_postgresql_backup_prints_the_pg_dump_command_without_the_password(
    tmp_path: Path, env_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "postgresql+psycopg://copbot:s3cret-pw@db.trust.nhs.uk:6543/copbot_live"

    assert copbot(env_file, monkeypatch, url, "backup", "/srv/backups/copbot.dump") == 0

    out = capsys.readouterr().out
    assert out.splitlines()[-1] == (
        "pg_dump --format=custom --file=/srv/backups/copbot.dump --host=db.trust.nhs.uk --port=6543 "
        "--username=copbot copbot_live"
    )
    assert "s3cret-pw" not in out


def test_check_finds_a_file_that_is_not_a_database(
    tmp_path: Path, env_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    garbage = tmp_path / "copbot.db"
    garbage.write_bytes(b"\x00\x13garbage, not a database " * 400)

    assert copbot(env_file, monkeypatch, f"sqlite:///{garbage}", "check") == EXIT_FAILED

    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["integrity", "foreign keys", "migrations"]
    assert all(": FAILED: cannot read the database: file is not a database" in line for line in lines)


def test_check_finds_a_damaged_page(
    live: Path, tmp_path: Path, env_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "damaged.db"
    assert copbot(env_file, monkeypatch, f"sqlite:///{live}", "backup", str(copy)) == 0
    pages = copy.stat().st_size // 4096
    with copy.open("r+b") as f:  # scribble over the header of every page after the first
        for page in range(1, pages):
            f.seek(page * 4096)
            f.write(b"\xff" * 16)
    capsys.readouterr()

    assert copbot(env_file, monkeypatch, f"sqlite:///{copy}", "check") == EXIT_FAILED

    [integrity] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("integrity")]
    assert integrity.startswith("integrity: FAILED: ")


def test_check_reports_a_database_behind_the_migrations_and_upgrade_fixes_it(
    tmp_path: Path, env_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "old.db"
    old = make_engine(f"sqlite:///{path}")
    migrate(old, revision="0004_intros")
    old.dispose()
    url = f"sqlite:///{path}"

    assert copbot(env_file, monkeypatch, url, "check") == EXIT_FAILED

    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == ["integrity: ok", "foreign keys: ok"]
    assert lines[2].startswith("migrations: FAILED: database at 0004_intros, head is ")
    assert lines[2].endswith(": back up, then run `copbot db upgrade`")

    assert copbot(env_file, monkeypatch, url, "upgrade") == 0
    assert copbot(env_file, monkeypatch, url, "check") == 0


def test_check_on_an_empty_database_says_no_migrations_were_applied(
    tmp_path: Path, env_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "empty.db"
    sqlite3.connect(path).close()

    assert copbot(env_file, monkeypatch, f"sqlite:///{path}", "check") == EXIT_FAILED

    assert "migrations: FAILED: no migrations applied, head is " in capsys.readouterr().out


def test_check_of_a_database_that_is_not_there_creates_nothing(
    tmp_path: Path, env_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "typo" / "copbot.db"

    assert copbot(env_file, monkeypatch, f"sqlite:///{missing}", "check") == EXIT_FAILED

    assert capsys.readouterr().out == f"database: FAILED: no database at {missing} (check DATABASE_URL)\n"
    assert not missing.parent.exists()


@pytest.mark.postgres
def test_check_on_postgresql_connects_and_reads_the_migration_state(
    pg_engine: Engine, env_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pg_engine.connect() as conn:
        schema = conn.exec_driver_sql("select current_schema()").scalar_one()
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/postgres?options=-csearch_path%3D{schema}"

    assert copbot(env_file, monkeypatch, url, "check") == 0

    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("connection: ok (PostgreSQL ")
    assert lines[1].startswith("migrations: ok (at head ")


def test_check_on_a_postgresql_that_does_not_answer_fails_with_a_message(
    env_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "postgresql+psycopg://copbot:pw@127.0.0.1:1/copbot?connect_timeout=2"  # nothing listens on port 1

    assert copbot(env_file, monkeypatch, url, "check") == EXIT_FAILED

    lines = capsys.readouterr().out.splitlines()
    assert [line.split(": FAILED: ")[0] for line in lines] == ["connection", "migrations"]
    assert all("cannot read the database" in line and "pw" not in line for line in lines)
