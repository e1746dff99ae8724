"""Several processes starting at once on a fresh database (uvicorn's workers, the inbox worker) all migrate it:
`migrate()` takes a lock, so one upgrades, the others wait and find the schema at head."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

from storage.engine import alembic_config, current_tables, make_engine, migrate
from tests.conftest import PG_ADMIN_URL, throwaway_schema

PROCESSES = 4

# Each child imports everything first, says "ready", then migrates when the parent says "go" (to all at once).
MIGRATE = """
import sys
from storage.engine import make_engine, migrate
engine = make_engine(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
migrate(engine)
print("migrated", flush=True)
"""


def migrate_at_once(url: str) -> list[tuple[int, str]]:
    """Run `migrate` in `PROCESSES` processes released together; each one's exit code and output."""
    root = Path(__file__).resolve().parents[2]
    children = [
        subprocess.Popen(
            [sys.executable, "-c", MIGRATE, url],
            cwd=root,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    try:
        for child in children:
            assert child.stdout is not None
            assert child.stdout.readline() == "ready\n", child.communicate(timeout=60)[0]
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        outputs = [child.communicate(timeout=120)[0] for child in children]
        return [(child.returncode, output) for child, output in zip(children, outputs, strict=True)]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()


def versions(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())


def head(engine: Engine) -> str | None:
    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def tables_of_a_fresh_migration() -> set[str]:
    reference = make_engine("sqlite://")
    try:
        migrate(reference)
        return current_tables(reference)
    finally:
        reference.dispose()


def assert_all_migrated_once(url: str, *, expected_tables: set[str]) -> None:
    """Processes migrating `url` at once all succeed, and the schema is at head, once, with `expected_tables`."""
    for returncode, output in migrate_at_once(url):
        assert returncode == 0, output
        assert output.endswith("migrated\n"), output
    engine = make_engine(url)
    try:
        assert versions(engine) == [head(engine)]
        assert current_tables(engine) == expected_tables
    finally:
        engine.dispose()


def test_processes_migrating_one_fresh_sqlite_file_at_once_all_succeed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/copbot.db"

    assert_all_migrated_once(url, expected_tables=tables_of_a_fresh_migration())
    assert (tmp_path / "copbot.db-migrate.lock").exists()


@pytest.fixture
def fresh_pg_url(postgres_reason: str | None) -> Iterator[str]:
    """A URL for an empty throw-away PostgreSQL schema (not migrated), dropped afterwards."""
    if postgres_reason:
        pytest.skip(postgres_reason)
    with throwaway_schema() as schema:
        yield f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}"


@pytest.mark.postgres
def test_processes_migrating_one_fresh_postgresql_schema_at_once_all_succeed(
    fresh_pg_url: str, pg_engine: Engine
) -> None:
    # pg_engine: a schema migrated on its own
    assert_all_migrated_once(fresh_pg_url, expected_tables=current_tables(pg_engine))


@pytest.mark.postgres
def test_the_postgresql_migration_lock_is_released_while_the_engine_lives_on(fresh_pg_url: str) -> None:
    name = f"copbot-test-{uuid.uuid4().hex[:8]}"  # this engine's sessions, whatever else uses the server
    engine = make_engine(f"{fresh_pg_url}&application_name={name}")
    try:
        migrate(engine)
        with engine.connect() as conn:  # the pool keeps the session that took the lock open
            held = conn.execute(
                text(
                    "SELECT count(*) FROM pg_locks JOIN pg_stat_activity USING (pid)"
                    " WHERE locktype = 'advisory' AND application_name = :name"
                ),
                {"name": name},
            ).scalar()
            sessions = conn.execute(
                text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :name"), {"name": name}
            ).scalar()
    finally:
        engine.dispose()

    assert sessions == 2  # the lock's and Alembic's
    assert held == 0
