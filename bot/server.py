"""The HTTP server for Slack (HTTP mode) and Teams: builds the runtime, its ASGI app and its background jobs, and
the inbox worker that runs what the server acknowledges (`copbot worker`; bot/worker.py).

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
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette

from bot.config import Settings, load_settings
from bot.logging_setup import configure_logging

if TYPE_CHECKING:
    from bot.worker import Worker

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
        metrics.observe_inbox(engine=container.engine, now=container.clock.now())

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


def build_worker(settings: Settings, *, threads: int, send_rate: float = 20.0) -> tuple[Worker, Callable[[], None]]:
    """An inbox worker for the configured platform (bot/worker.py) and what closes its connections."""
    from bot.worker import Kind, Worker
    from storage.inbox import open_queue

    kinds: dict[str, Kind]
    if settings.platform == "teams":
        from bot.teams.inbox import teams_kinds
        from bot.teams.runtime import build_teams

        runtime = build_teams(settings, send_rate=send_rate)
        container, close = runtime.container, runtime.close
        kinds = dict(teams_kinds(runtime))
    else:
        from bot.container import build
        from bot.slack.inbox import SlackKinds
        from bot.slack.platform import SlackPlatform, make_client

        assert settings.slack_bot_token is not None
        client = make_client(token=settings.slack_bot_token.value, base_url=settings.slack_api_url)
        container = build(settings, platform=SlackPlatform(client), send_rate=send_rate)
        close = container.close
        kinds = dict(SlackKinds(core=container.bot, client=client, story_emoji=settings.story_emoji).kinds())
    worker = Worker(
        engine=container.engine, queue=open_queue(container.engine), kinds=kinds, clock=container.clock,
        threads=threads,
    )  # fmt: skip
    return worker, close


def run_worker(settings: Settings, *, threads: int, parent: int | None = None) -> None:
    """`copbot worker`: run inbox rows until SIGTERM or SIGINT (or, given `parent`, until that process is gone),
    then finish the rows in hand and stop."""
    import signal
    import threading

    if parent is not None:
        os.nice(WORKER_NICENESS)  # beside the server: acknowledgements come first, the work uses what CPU is left
    worker, close = build_worker(settings, threads=threads)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    if parent is not None:

        def orphaned() -> None:  # the server was killed without stopping its worker: stop too
            while not stop.wait(1.0):
                if os.getppid() != parent:
                    log.warning("the copbot server that started this worker is gone; stopping")
                    stop.set()

        threading.Thread(target=orphaned, name="inbox-parent-watch", daemon=True).start()
    log.info("copbot inbox worker %s on %s, %d thread(s)", worker.name, settings.platform, threads)
    try:
        worker.run_forever(stop)
    finally:
        close()


WORKER_NICENESS = 10


class WorkerProcess:
    """`copbot run`'s inbox worker: a child process (`copbot worker`), started again whenever it exits, so the
    HTTP server's acknowledgements never wait on the work and a crashed worker costs only a restart."""

    RESTART_DELAY_S = 1.0
    MAX_RESTART_DELAY_S = 60.0

    def __init__(self, *, env_file: Path, threads: int) -> None:
        import sys

        self.command = [
            sys.executable,
            "-m",
            "bot.cli",
            "--env-file",
            str(env_file),
            "worker",
            "--threads",
            str(threads),
            "--parent",
            str(os.getpid()),
        ]
        self._process: Any = None
        self._stopping = False
        self._thread: Any = None

    def start(self) -> None:
        import threading

        self._thread = threading.Thread(target=self._supervise, name="inbox-worker-supervisor", daemon=True)
        self._thread.start()

    def _supervise(self) -> None:
        import subprocess
        import time

        delay = self.RESTART_DELAY_S
        while not self._stopping:
            started = time.monotonic()
            self._process = subprocess.Popen(self.command)
            code = self._process.wait()
            if self._stopping:
                return
            # A worker that ran a while is restarted at once; one that keeps failing at start, ever more slowly.
            delay = self.RESTART_DELAY_S if time.monotonic() - started > self.MAX_RESTART_DELAY_S else delay
            log.warning("the inbox worker exited (%s); starting it again in %.0f s", code, delay)
            time.sleep(delay)
            delay = min(delay * 2, self.MAX_RESTART_DELAY_S)

    def stop(self) -> None:
        self._stopping = True
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except Exception:
                process.kill()


def serve(
    settings: Settings, *, send_rate: float, workers: int, env_file: Path, inbox_threads: int = 4,
    with_worker: bool = True,
) -> None:  # fmt: skip
    """Run uvicorn (in this process, or in `workers` processes that each build their own runtime) and, unless
    `with_worker` is False (workers run elsewhere: `copbot worker`), one inbox worker process beside it."""
    import uvicorn

    inbox_worker = WorkerProcess(env_file=env_file, threads=inbox_threads) if with_worker else None
    if inbox_worker is not None:
        inbox_worker.start()
    try:
        _serve(settings, send_rate=send_rate, workers=workers, env_file=env_file, uvicorn_run=uvicorn.run)
    finally:
        if inbox_worker is not None:
            inbox_worker.stop()


def _serve(
    settings: Settings, *, send_rate: float, workers: int, env_file: Path, uvicorn_run: Callable[..., None]
) -> None:
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
        uvicorn_run(build_web(settings, send_rate=send_rate), **common)
        return
    os.environ[_ENV_FILE] = str(env_file.resolve())
    os.environ[_SEND_RATE] = str(send_rate)
    uvicorn_run("bot.server:app_from_environment", factory=True, workers=workers, **common)


def app_from_environment() -> Starlette:
    """uvicorn's factory in each worker process: the same settings the parent validated."""
    settings = load_settings(env_file=Path(os.environ.get(_ENV_FILE, ".env")))
    # Each worker holds the same loggers, scrubber and format as the parent.
    configure_logging(level=settings.log_level, log_format=settings.log_format)
    return build_web(settings, send_rate=float(os.environ.get(_SEND_RATE, "20")))
