"""Database engines (SQLite with WAL, busy timeout and foreign keys; PostgreSQL) and schema migrations."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.pool import StaticPool
from sqlmodel import Session

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
MIGRATE_ADVISORY_KEY = 0x63626D696772  # "cbmigr": the PostgreSQL advisory lock migrations take (purges: "copbot")


class DatabaseUnavailable(RuntimeError):
    """The database cannot be opened or migrated; the message says why and what to do."""


def make_engine(url: str, *, busy_timeout_ms: int = 5000, echo: bool = False) -> Engine:
    """An engine for `url`; SQLite connections get WAL, a busy timeout and foreign keys on every connection."""
    parsed = make_url(url)
    kwargs: dict[str, Any] = {"echo": echo}
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        in_memory = database in ("", ":memory:") or "mode=memory" in str(parsed.query)
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": busy_timeout_ms / 1000}
        if in_memory:
            kwargs["poolclass"] = StaticPool
        else:
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, **kwargs)
        _install_sqlite_pragmas(engine, busy_timeout_ms=busy_timeout_ms, wal=not in_memory)
        return engine
    if parsed.get_backend_name() == "postgresql":
        kwargs["pool_pre_ping"] = True
        return create_engine(url, **kwargs)
    raise DatabaseUnavailable(
        f"unsupported DATABASE_URL scheme {parsed.drivername!r}: use sqlite:///path.db or postgresql+psycopg://..."
    )


def _install_sqlite_pragmas(engine: Engine, *, busy_timeout_ms: int, wal: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            cursor.execute("PRAGMA foreign_keys = ON")
            if wal:
                cursor.execute("PRAGMA journal_mode = WAL")
                cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()


def dialect_insert(db: Session, table: Any) -> Any:
    """An INSERT for `table` with the session's dialect's ON CONFLICT support (SQLite and PostgreSQL alike)."""
    if db.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


def alembic_config(engine: Engine) -> Config:
    """An Alembic configuration that migrates through `engine` (no alembic.ini needed)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    config.attributes["engine"] = engine
    return config


def migrate(engine: Engine, *, revision: str = "head") -> None:
    """Bring the schema up to `revision`, turning driver errors into one clear `DatabaseUnavailable`.

    Every process `copbot run` starts migrates at once; the lock makes one upgrade while the others wait, then
    find the schema at `revision` and have nothing to do.
    """
    try:
        with _migration_lock(engine):
            command.upgrade(alembic_config(engine), revision)
    except (DBAPIError, SQLAlchemyError, sqlite3.Error, OSError) as exc:
        raise DatabaseUnavailable(describe_failure(engine, exc)) from exc


def downgrade(engine: Engine, *, revision: str) -> None:
    """Take the schema back to `revision` ("base" removes every table copbot made)."""
    try:
        with _migration_lock(engine):
            command.downgrade(alembic_config(engine), revision)
    except (DBAPIError, SQLAlchemyError, sqlite3.Error, OSError) as exc:
        raise DatabaseUnavailable(describe_failure(engine, exc)) from exc


@contextlib.contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """Hold the database's migration lock, waiting for it (the blocking twin of housekeeping's `exclusive`).

    PostgreSQL: a session advisory lock on a connection of its own, committed at once, so Alembic's transaction
    is its own; it goes with the session if the process dies. A SQLite file: `flock` on `<db>-migrate.lock`
    beside it, which the kernel drops with the process. An in-memory database has only this process.
    """
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATE_ADVISORY_KEY})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATE_ADVISORY_KEY})
                conn.commit()
        return
    database = engine.url.database or ""
    if database in ("", ":memory:") or "mode=memory" in str(engine.url.query) or sys.platform == "win32":
        yield
        return
    import fcntl

    path = Path(database).expanduser()
    with open(path.with_name(path.name + "-migrate.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def describe_failure(engine: Engine, exc: BaseException) -> str:
    """A one-paragraph explanation of why the database could not be used, without secrets."""
    where = engine.url.render_as_string(hide_password=True)
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
    hint = ""
    lowered = text.lower()
    if "database is locked" in lowered:
        hint = " Another program holds a write lock on it; stop it (or wait) and start copbot again."
    elif "file is not a database" in lowered or "malformed" in lowered:
        hint = " The file is not a copbot SQLite database; point DATABASE_URL at another path or move the file away."
    elif "unable to open" in lowered or "readonly" in lowered or "permission" in lowered:
        hint = " Check that the folder exists and that copbot may read and write it."
    elif "connection" in lowered or "could not" in lowered:
        hint = " Check that the database server is running and that DATABASE_URL is right."
    return f"cannot use the database at {where}: {text}.{hint}"


def current_tables(engine: Engine) -> set[str]:
    """The table names that exist now (used by checks and tests)."""
    return set(inspect(engine).get_table_names())
