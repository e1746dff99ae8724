"""The HTTP server for Slack (HTTP mode) and Teams: builds the runtime, its ASGI app and its background jobs.

With `--workers N` uvicorn runs N processes; each builds its own runtime through `app_from_environment`, the
factory uvicorn imports, and starts its own scheduler (the outbox makes several dispatchers safe).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine, text
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


def build_web(settings: Settings, *, send_rate: float) -> Starlette:
    """The ASGI app for the configured platform; its lifespan starts and stops the scheduler."""
    from bot import scheduler
    from bot.web import create_web_app

    if settings.platform == "teams":
        from bot.teams.runtime import build_teams

        runtime = build_teams(settings, send_rate=send_rate)
        container, close, slack_app, teams = runtime.container, runtime.close, None, runtime.adapter
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
    jobs: list[object] = []

    def start() -> None:
        jobs.append(scheduler.start(container))

    def stop() -> None:
        for job in jobs:
            job.shutdown(wait=False)  # type: ignore[attr-defined]
        close()

    return create_web_app(
        slack_app=slack_app, healthy=_healthy(container.engine), teams_handler=teams, on_startup=start, on_shutdown=stop
    )


def serve(settings: Settings, *, send_rate: float, workers: int, env_file: Path) -> None:
    """Run uvicorn: in this process, or in `workers` processes that each build their own runtime."""
    import uvicorn

    common = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level.lower(),
        "access_log": False,
    }
    log.info(
        "copbot on %s over HTTP on %s:%s (%d process(es))", settings.platform, settings.host, settings.port, workers
    )
    if workers <= 1:
        uvicorn.run(build_web(settings, send_rate=send_rate), **common)  # type: ignore[arg-type]
        return
    os.environ[_ENV_FILE] = str(env_file.resolve())
    os.environ[_SEND_RATE] = str(send_rate)
    uvicorn.run("bot.server:app_from_environment", factory=True, workers=workers, **common)  # type: ignore[arg-type]


def app_from_environment() -> Starlette:
    """uvicorn's factory in each worker process: the same settings the parent validated."""
    settings = load_settings(env_file=Path(os.environ.get(_ENV_FILE, ".env")))
    configure_logging(level=settings.log_level)  # each worker holds the same loggers and scrubber as the parent
    return build_web(settings, send_rate=float(os.environ.get(_SEND_RATE, "20")))
