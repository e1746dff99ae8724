"""The HTTP server for Slack (HTTP mode) and Teams: builds the runtime, its ASGI app and its background jobs.

With `--workers N` uvicorn runs N processes; each builds its own runtime through `app_from_environment`, the
factory uvicorn imports, and starts its own scheduler (the outbox makes several dispatchers safe). Each process
keeps its own metrics, so `/metrics` answers for the process that took the scrape.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette

from bot.config import Settings, load_settings
from bot.logging_setup import configure_logging

log = logging.getLogger(__name__)

# How the parent process hands its command-line choices to uvicorn's worker processes (internal, not settings).
_ENV_FILE = "COPBOT__ENV_FILE"
_SEND_RATE = "COPBOT__SEND_RATE"


class StartupFailed(RuntimeError):
    """The platform refused the configured credentials, or could not be reached, at start-up."""


def _healthy(engine: Engine) -> Callable[[], bool]:
    def healthy() -> bool:
        try:
            with engine.connect() as conn:
                conn.execute(text("select 1"))
            return True
        except Exception:
            return False

    return healthy


class Running(Protocol):
    """What readiness asks of a background scheduler (APScheduler's `BaseScheduler.running`)."""

    @property
    def running(self) -> bool: ...


def readiness(engine: Engine, *, schedulers: Sequence[Running]) -> Callable[[], dict[str, bool]]:
    """`/readyz`'s checks: the database answers `SELECT 1`, its schema is at the migrations' head, and this
    process's scheduler runs (it is started with the server, so none yet means not ready). Names and booleans only:
    no URL, message or secret is ever in the answer."""
    from storage.housekeeping import schema_revision

    def checks() -> dict[str, bool]:
        try:
            with engine.connect() as conn:
                conn.execute(text("select 1"))
                database = _writable(conn)
            migrations = schema_revision(engine).at_head
        except SQLAlchemyError as exc:
            log.warning("readiness: the database cannot be used (%s)", type(exc).__name__)
            database = migrations = False
        scheduler = bool(schedulers) and all(s.running for s in schedulers)
        return {"database": database, "migrations": migrations, "scheduler": scheduler}

    return checks


def _writable(conn: Connection) -> bool:
    """Whether the database takes writes (a read-only file or replica answers `SELECT 1` but stores nothing): SQLite
    takes and drops its write lock; PostgreSQL says whether this session is read-only. Nothing is written."""
    if conn.dialect.name == "postgresql":
        writable = conn.exec_driver_sql("SHOW transaction_read_only").scalar() == "off"
        conn.rollback()
        return writable
    if conn.in_transaction():
        conn.rollback()
    driver = conn.connection.driver_connection
    cursor = driver.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute("BEGIN IMMEDIATE")
        # A write that changes nothing, rolled back: a read-only file refuses it (a full disk refuses the lock).
        cursor.execute("UPDATE alembic_version SET version_num = version_num")
    except sqlite3.Error as exc:
        missing = getattr(exc, "sqlite_errorname", "") == "SQLITE_ERROR"  # no schema yet: the migrations check says so
        if not missing:
            log.warning("readiness: the database takes no writes (%s)", type(exc).__name__)
        return missing
    finally:
        if driver.in_transaction:  # type: ignore[union-attr]
            driver.rollback()  # type: ignore[union-attr]
        cursor.close()
    return True


def build_web(settings: Settings, *, send_rate: float) -> Starlette:
    """The ASGI app for the configured platform; its lifespan starts and stops the scheduler."""
    from bot import metrics, scheduler
    from bot.web import create_web_app

    if settings.platform == "teams":
        from bot.teams.runtime import build_teams

        runtime = build_teams(settings, send_rate=send_rate)
        container, close, slack_app, teams = runtime.container, runtime.close, None, runtime.adapter
        secret = None
    else:
        from bot.container import build
        from bot.slack.app import SlackDeps, SlackUnavailable, start_app
        from bot.slack.platform import SlackPlatform, make_client

        assert settings.slack_bot_token is not None
        token = settings.slack_bot_token.value
        client = make_client(token=token, base_url=settings.slack_api_url)
        sender = make_client(token=token, base_url=settings.slack_api_url, wait_on_rate_limit=False)
        container = build(
            settings, platform=SlackPlatform(client), delivery_platform=SlackPlatform(sender), send_rate=send_rate
        )
        secret = settings.slack_signing_secret.value if settings.slack_signing_secret else None
        deps = SlackDeps(bot=container.bot, engine=container.engine, clock=container.clock)
        try:
            slack_app = start_app(deps=deps, client=client, signing_secret=secret)
        except SlackUnavailable as exc:
            container.close()
            raise StartupFailed(str(exc)) from exc
        close, teams = container.close, None
    jobs: list[Any] = []

    def start() -> None:
        jobs.append(scheduler.start(container))

    def stop() -> None:
        for job in jobs:
            job.shutdown(wait=False)
        close()

    def collect() -> None:
        metrics.observe_outbox(engine=container.engine, now=container.clock.now())

    return create_web_app(
        slack_app=slack_app,
        slack_signing_secret=secret,
        healthy=_healthy(container.engine),
        teams_handler=teams,
        readiness=readiness(container.engine, schedulers=jobs),
        collect=collect,
        on_startup=start,
        on_shutdown=stop,
    )


def serve(settings: Settings, *, send_rate: float, workers: int, env_file: Path) -> None:
    """Run uvicorn: in this process, or in `workers` processes that each build their own runtime."""
    import uvicorn

    common: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level.lower(),
        "access_log": False,
    }
    if settings.log_format == "json":
        # uvicorn's own lines then go through the root logger, so they are JSON (and scrubbed) like copbot's.
        common["log_config"] = None
        configure_logging(level=settings.log_level, log_format="json")
    log.info(
        "copbot on %s over HTTP on %s:%s (%d process(es))", settings.platform, settings.host, settings.port, workers
    )
    if workers <= 1:
        uvicorn.run(build_web(settings, send_rate=send_rate), **common)
        return
    os.environ[_ENV_FILE] = str(env_file.resolve())
    os.environ[_SEND_RATE] = str(send_rate)
    uvicorn.run("bot.server:app_from_environment", factory=True, workers=workers, **common)


def app_from_environment() -> Starlette:
    """uvicorn's factory in each worker process: the same settings the parent validated."""
    settings = load_settings(env_file=Path(os.environ.get(_ENV_FILE, ".env")))
    # Each worker holds the same loggers, scrubber and format as the parent.
    configure_logging(level=settings.log_level, log_format=settings.log_format)
    return build_web(settings, send_rate=float(os.environ.get(_SEND_RATE, "20")))
