"""The `copbot` command: run the bot (console, Slack or Teams by configuration), and admin sub-commands."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

# Keep this module's imports light: `copbot --help` should answer at once.

EXIT_FAILED = 1  # `db backup` / `db check`: the backup was not written, or a check failed
EXIT_CONFIG = 2
EXIT_DATABASE = 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="copbot",
        description="copbot: a chat bot for Patient Safety Communities of Practice on Slack, Microsoft Teams or "
        "the console. With no command it runs on the configured platform (the console when no Slack/Teams "
        "credentials are set).",
    )
    parser.add_argument("--env-file", type=Path, default=Path(".env"), help="settings file (default: .env)")
    sub = parser.add_subparsers(dest="command", metavar="command")
    run = sub.add_parser("run", help="run on the configured platform (the default)")
    run.add_argument(
        "--no-worker",
        action="store_true",
        help="Slack/Teams: run only the server; inbox workers run elsewhere (`copbot worker`, same database)",
    )
    worker = sub.add_parser(
        "worker", help="run an inbox worker: the work behind what the server acknowledged (Slack, Teams)"
    )
    worker.add_argument("--threads", type=int, default=4, help="rows run at once (default 4)")
    worker.add_argument("--parent", type=int, help=argparse.SUPPRESS)  # `copbot run`'s own worker: stop with it
    sub.add_parser("console", help="run in this terminal (or from a pipe) with no chat credentials")
    db = sub.add_parser("db", help="database administration")
    db_sub = db.add_subparsers(dest="db_command", metavar="db-command", required=True)
    db_sub.add_parser("upgrade", help="apply schema migrations (also done at every start)")
    backup = db_sub.add_parser(
        "backup", help="copy the SQLite database to a file while copbot runs (PostgreSQL: prints the pg_dump command)"
    )
    backup.add_argument("file", type=Path, help="the backup file to write")
    backup.add_argument("--force", action="store_true", help="replace the file if it exists")
    db_sub.add_parser("check", help="check the database's integrity and that its schema is at the current migration")
    sub.add_parser("config", help="check the settings and print them (secrets masked)")
    sub.add_parser("schedule", help="list each community's next reflective prompt, in local time")
    package = sub.add_parser("teams-package", help="build the Microsoft Teams app package (zip) from the settings")
    package.add_argument("--out", type=Path, default=Path("copbot-teams.zip"), help="default: copbot-teams.zip")
    package.add_argument("--domain", help="the host serving /api/messages, e.g. copbot.example.nhs.uk")
    package.add_argument("--developer-url", help="your organisation's web page (default: https://<domain>/)")
    package.add_argument("--app-version", default="1.0.0", help="the app's version; raise it for every upload")
    parser.add_argument(
        "--send-rate",
        type=float,
        default=20.0,
        help="messages a second the outbox may send across the workspace (default 20; Slack allows 1/s per channel)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="HTTP server processes for Slack HTTP mode and Teams (default 1; use the number of cores under load)",
    )
    args = parser.parse_args(argv)

    from bot.config import ConfigError, load_settings

    try:
        settings = load_settings(env_file=args.env_file)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    command = args.command or "run"
    if command == "config":
        for key, value in settings.safe_summary().items():
            print(f"{key} = {value}")
        return 0
    if command == "teams-package":
        return _teams_package(settings, args)
    from storage.engine import DatabaseUnavailable

    try:
        if command == "db" and args.db_command == "backup":
            return _db_backup(settings, target=args.file, force=args.force)
        if command == "db" and args.db_command == "check":
            return _db_check(settings)
        if command == "db":
            return _db_upgrade(settings)
        if command == "schedule":
            return _schedule(settings)
        if command == "console" or (command == "run" and settings.platform == "console"):
            return _console(settings)
        with_worker = not getattr(args, "no_worker", False)
        if command == "worker":
            return _worker(settings, threads=args.threads, parent=args.parent)
        if settings.platform == "slack" and settings.slack_socket_mode:
            return _slack_socket_mode(
                settings, send_rate=args.send_rate, env_file=args.env_file, with_worker=with_worker
            )
        if settings.platform in ("slack", "teams"):
            return _serve_http(
                settings, send_rate=args.send_rate, workers=args.workers, env_file=args.env_file,
                with_worker=with_worker,
            )  # fmt: skip
        print(
            f"copbot: the {settings.platform} adapter is not available in this version yet; "
            "run `copbot console` to try copbot without chat credentials.",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    except DatabaseUnavailable as exc:
        print(f"copbot: {exc}", file=sys.stderr)
        return EXIT_DATABASE


def _configure_logging(level: str, *, quiet_console: bool) -> None:
    from bot.logging_setup import configure_logging

    # Third-party loggers held at WARNING, bodies and exception messages withheld: see bot/logging_setup.py.
    configure_logging(level=level, quiet_console=quiet_console, stream=sys.stderr)


def _db_upgrade(settings: object) -> int:
    from bot.config import Settings
    from storage.engine import make_engine, migrate

    assert isinstance(settings, Settings)
    _configure_logging(settings.log_level, quiet_console=False)
    engine = make_engine(settings.database_url)
    migrate(engine)
    print("copbot: database schema is up to date")
    return 0


def _db_backup(settings: object, *, target: Path, force: bool) -> int:
    """SQLite: an online backup to `target`. PostgreSQL: print the pg_dump command (copbot holds no dump tool)."""
    import shlex

    from bot.config import Settings
    from storage.engine import make_engine
    from storage.housekeeping import BackupFailed, backup_sqlite, pg_dump_command, sqlite_file

    assert isinstance(settings, Settings)
    if settings.database_url.startswith("postgresql"):
        print("copbot: back up PostgreSQL with pg_dump (the password comes from PGPASSWORD or ~/.pgpass):")
        print(shlex.join(pg_dump_command(url=settings.database_url, target=target)))
        return 0
    source = sqlite_file(settings.database_url)
    if source is None:
        print("copbot: the database is in memory: there is nothing to back up", file=sys.stderr)
        return EXIT_FAILED
    if not source.is_file():
        print(f"copbot: no database at {source} (check DATABASE_URL)", file=sys.stderr)
        return EXIT_FAILED
    engine = make_engine(settings.database_url)
    try:
        size = backup_sqlite(engine=engine, target=target, overwrite=force)
    except BackupFailed as exc:
        print(f"copbot: backup not written: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        engine.dispose()
    print(f"copbot: backed up {source} to {target} ({size:,} bytes)")
    return 0


def _db_check(settings: object) -> int:
    """One line per check; exit 0 only when every check passed. Never migrates: it reports where the schema is."""
    from bot.config import Settings
    from storage.engine import make_engine
    from storage.housekeeping import check_database, sqlite_file

    assert isinstance(settings, Settings)
    source = sqlite_file(settings.database_url)
    if source is not None and not source.is_file():  # opening it would make an empty database
        print(f"database: FAILED: no database at {source} (check DATABASE_URL)")
        return EXIT_FAILED
    engine = make_engine(settings.database_url)
    try:
        checks = check_database(engine)
    finally:
        engine.dispose()
    for check in checks:
        print(f"{check.name}: {check.detail}" if check.ok else f"{check.name}: FAILED: {check.detail}")
    return 0 if all(c.ok for c in checks) else EXIT_FAILED


def _console(settings: object) -> int:
    from bot.config import Settings
    from bot.console.app import build_console

    assert isinstance(settings, Settings)
    _configure_logging(settings.log_level, quiet_console=True)
    app = build_console(settings, inp=sys.stdin, out=sys.stdout, interactive=sys.stdin.isatty())
    try:
        return app.run()
    except KeyboardInterrupt:
        return 0
    finally:
        app.container.close()


def _worker(settings: object, *, threads: int, parent: int | None) -> int:
    from bot.config import Settings
    from bot.server import run_worker

    assert isinstance(settings, Settings)
    _configure_logging(settings.log_level, quiet_console=False)
    if settings.platform not in ("slack", "teams"):
        print("copbot: an inbox worker runs for Slack or Teams; the console needs none", file=sys.stderr)
        return EXIT_CONFIG
    if threads < 1:
        print("copbot: --threads must be at least 1", file=sys.stderr)
        return EXIT_CONFIG
    run_worker(settings, threads=threads, parent=parent)
    return 0


def _serve_http(settings: object, *, send_rate: float, workers: int, env_file: Path, with_worker: bool) -> int:
    from bot.config import Settings
    from bot.server import StartupFailed, serve

    assert isinstance(settings, Settings)
    _configure_logging(settings.log_level, quiet_console=False)
    if settings.platform == "teams" and not settings.teams_team_id:
        logging.getLogger("copbot").warning(
            "TEAMS_TEAM_ID is not set: channels are made in the team a command comes from"
        )
    try:
        serve(settings, send_rate=send_rate, workers=workers, env_file=env_file, with_worker=with_worker)
    except StartupFailed as exc:
        print(f"copbot: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return 0


def _slack_socket_mode(settings: object, *, send_rate: float, env_file: Path, with_worker: bool) -> int:
    from bot import scheduler
    from bot.config import Settings
    from bot.container import build
    from bot.server import WorkerProcess
    from bot.slack.app import SlackDeps, SlackUnavailable, start_app
    from bot.slack.platform import SlackPlatform, make_client

    assert isinstance(settings, Settings)
    assert settings.slack_bot_token is not None and settings.slack_app_token is not None
    _configure_logging(settings.log_level, quiet_console=False)
    token = settings.slack_bot_token.value
    client = make_client(token=token, base_url=settings.slack_api_url)
    sender = make_client(token=token, base_url=settings.slack_api_url, wait_on_rate_limit=False)
    container = build(
        settings, platform=SlackPlatform(client), delivery_platform=SlackPlatform(sender), send_rate=send_rate
    )
    deps = SlackDeps(bot=container.bot, engine=container.engine, clock=container.clock)
    try:
        app = start_app(deps=deps, client=client, signing_secret=None)
    except SlackUnavailable as exc:
        print(f"copbot: {exc}", file=sys.stderr)
        container.close()
        return EXIT_CONFIG
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    jobs = scheduler.start(container)
    inbox_worker = WorkerProcess(env_file=env_file, threads=4) if with_worker else None
    if inbox_worker is not None:
        inbox_worker.start()
    try:
        logging.getLogger("copbot").info("copbot on Slack, Socket Mode")
        SocketModeHandler(app, app_token=settings.slack_app_token.value, web_client=client).start()  # type: ignore[no-untyped-call]
        return 0
    finally:
        if inbox_worker is not None:
            inbox_worker.stop()
        jobs.shutdown(wait=False)
        container.close()


def _schedule(settings: object) -> int:
    """Print each community's next prompt, in its own time zone."""
    from sqlmodel import Session

    from bot.config import Settings
    from bot.container import core_config
    from handlers.ports import SystemClock
    from handlers.reflections import local_text, upcoming
    from storage.engine import make_engine, migrate

    assert isinstance(settings, Settings)
    engine = make_engine(settings.database_url)
    migrate(engine)
    with Session(engine) as db:
        rows = upcoming(db=db, now=SystemClock().now(), config=core_config(settings))
    engine.dispose()
    if not rows:
        print("No communities yet.")
        return 0
    width = max(len(c.name) for c, _ in rows)
    for community, due in rows:
        if due is None:
            state = "paused" if community.prompt_paused else "no schedule (/cop prompt schedule …)"
        else:
            mode = "channel" if community.prompt_mode == "channel" else "DM to each member"
            state = f"{local_text(due, community.timezone)}, {mode}"
        print(f"{community.name.ljust(width)}  {community.platform:<7}  {state}")
    return 0


def _teams_package(settings: object, args: argparse.Namespace) -> int:
    from bot.config import Settings
    from bot.teams.package import build_package

    assert isinstance(settings, Settings)
    if not settings.teams_app_id:
        print(
            "copbot: teams-package needs TEAMS_APP_ID (the Microsoft App ID of your Azure Bot) in .env or the "
            "environment",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    developer_url = args.developer_url or (f"https://{args.domain}/" if args.domain else None)
    if not developer_url:
        print("copbot: give --domain (the bot's host name) or --developer-url (an https page)", file=sys.stderr)
        return EXIT_CONFIG
    try:
        out = build_package(
            app_id=settings.teams_app_id,
            bot_domain=args.domain,
            out=args.out,
            version=args.app_version,
            developer_url=developer_url,
        )
    except ValueError as exc:
        print(f"copbot: cannot build the Teams package: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"copbot: wrote {out}; upload it in Teams (Apps, Manage your apps, Upload an app)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
