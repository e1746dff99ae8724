"""Shared fixtures: a fresh database per test (SQLite in memory, or a throw-away PostgreSQL schema) and a
conversation helper that drives the core like a person would."""

from __future__ import annotations

import contextlib
import datetime as dt
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from handlers.app import CopBot
from handlers.context import CoreConfig
from handlers.ports import Actor, Invocation, Message, Reply
from storage.engine import make_engine, migrate
from tests.fakes.recording import RecordingPlatform

pytest_plugins = ["tests.conftest_slack", "tests.conftest_teams"]

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


class FixedClock:
    """A clock that stays where a test puts it."""

    def __init__(self, at: dt.datetime) -> None:
        self.at = at

    def now(self) -> dt.datetime:
        return self.at

    def advance(self, by: dt.timedelta) -> None:
        self.at += by


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.UTC))


@pytest.fixture
def engine() -> Iterator[Engine]:
    """A fresh, migrated in-memory SQLite database."""
    eng = make_engine("sqlite://")
    migrate(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def file_engine(tmp_path: Path) -> Iterator[Engine]:
    """A fresh, migrated SQLite file (WAL): for tests where several threads use the database at once, as in
    production (the in-memory engine shares one connection)."""
    eng = make_engine(f"sqlite:///{tmp_path}/copbot.db")
    migrate(eng)
    yield eng
    eng.dispose()


def _postgres_available() -> str | None:
    """None when PostgreSQL answers (starting the local cluster if needed), else the reason it cannot."""
    probe = create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
    try:
        for attempt in range(2):
            try:
                with probe.connect() as conn:
                    conn.execute(text("select 1"))
                return None
            except Exception as exc:
                if attempt == 0 and shutil.which("pg_ctlcluster") and Path("/etc/postgresql").is_dir():
                    versions = sorted(p.name for p in Path("/etc/postgresql").iterdir())
                    if versions:
                        subprocess.run(
                            ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"],
                            check=False,
                            capture_output=True,
                            timeout=60,
                        )
                        continue
                return f"PostgreSQL at 127.0.0.1:5432 is not reachable and could not be started: {exc}"
        return "PostgreSQL did not answer"
    finally:
        probe.dispose()


@pytest.fixture(scope="session")
def postgres_reason() -> str | None:
    return _postgres_available()


@contextlib.contextmanager
def throwaway_schema() -> Iterator[str]:
    """The name of a new, empty PostgreSQL schema, dropped (with everything in it) afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield schema
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def pg_engine(postgres_reason: str | None) -> Iterator[Engine]:
    """A migrated throw-away PostgreSQL schema, dropped afterwards."""
    if postgres_reason:
        pytest.skip(postgres_reason)
    with throwaway_schema() as schema:
        eng = create_engine(PG_ADMIN_URL, connect_args={"options": f"-csearch_path={schema}"})
        try:
            migrate(eng)
            yield eng
        finally:
            eng.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_engine(request: pytest.FixtureRequest) -> Engine:
    """The same test on SQLite and on PostgreSQL."""
    chosen: Engine = request.getfixturevalue("engine" if request.param == "sqlite" else "pg_engine")
    return chosen


class Conversation:
    """Drives the core as people would: `say` runs a command and returns the replies' text."""

    def __init__(self, bot: CopBot, platform: RecordingPlatform) -> None:
        self.bot = bot
        self.platform = platform
        self.last: list[Reply] = []

    def actor(self, user: str) -> Actor:
        return Actor(platform="test", workspace_id="T1", user_id=user, display_name=user.title())

    def say(self, text: str, *, user: str = "alice", channel: str | None = None) -> str:
        self.last = self.bot.handle_command(Invocation(actor=self.actor(user), text=text, channel_id=channel))
        return self.shown()

    def submit(self, form_id: str, values: dict[str, str], *, user: str = "alice") -> str:
        self.last = self.bot.handle_submission(actor=self.actor(user), form_id=form_id, values=values)
        return self.shown()

    def click(self, action_id: str, value: str, *, user: str = "alice") -> str:
        self.last = self.bot.handle_action(actor=self.actor(user), action_id=action_id, value=value)
        return self.shown()

    def shown(self) -> str:
        """What the person is shown of the last replies (see `visible`), not the data handed over."""
        return "\n".join(visible(r.message) for r in self.last if r.message is not None)


def visible(message: Message) -> str:
    """A neutral message as every adapter shows it, markup kept: with sections, the title, the sections (text and
    label/value fields) and the button labels — its `text` is then only the notification, which Slack does not show
    once blocks exist; without sections, the text and the button labels. Platform renderings (escaping, mentions)
    are tested against each platform in tests/bot with `tests.seen`."""
    if message.sections:
        parts = [message.title or ""]
        for section in message.sections:
            parts.append(section.text)
            parts += [f"{label}: {value}" for label, value in section.fields]
    else:
        parts = [message.text]
    parts += [f"[{b.label}]" for b in message.buttons]
    return "\n".join(p for p in parts if p)


@pytest.fixture
def platform() -> RecordingPlatform:
    return RecordingPlatform()


@pytest.fixture
def core_config() -> CoreConfig:
    return CoreConfig()


@pytest.fixture
def bot(engine: Engine, platform: RecordingPlatform, clock: FixedClock, core_config: CoreConfig) -> CopBot:
    return CopBot(engine=engine, platform=platform, clock=clock, config=core_config)


@pytest.fixture
def convo(bot: CopBot, platform: RecordingPlatform) -> Conversation:
    return Conversation(bot, platform)
