"""Wires copbot for Teams: one HTTP client, msal tokens, the Connector and Graph clients, the platform and adapter.

Production trusts the system's certificate authorities (`ssl.create_default_context()`, which also honours
`SSL_CERT_FILE`/`SSL_CERT_DIR`); tests either pass an `httpx.Client` that trusts the fakes' throw-away CA or set
`SSL_CERT_FILE` for a subprocess.
"""

from __future__ import annotations

import datetime as dt
import ssl
import time
from dataclasses import dataclass

import httpx
from sqlalchemy import Engine

from bot.config import Settings
from bot.container import Container, build
from bot.teams._http import RetryPolicy, Sleep
from bot.teams.adapter import TeamsAdapter
from bot.teams.auth import BotFrameworkAuthenticator
from bot.teams.connector import ConnectorClient
from bot.teams.graph import GraphClient
from bot.teams.platform import TeamsPlatform
from bot.teams.tokens import MsalTokenProvider
from handlers.ports import Clock, SystemClock
from storage.engine import make_engine


@dataclass
class TeamsRuntime:
    """The running pieces: the container (engine, core) and the adapter `POST /api/messages` calls (it also runs
    the inbox rows it writes: `bot.teams.inbox.teams_kinds(runtime)` for a worker)."""

    container: Container
    adapter: TeamsAdapter
    platform: TeamsPlatform
    http: httpx.Client
    owns_http: bool

    def close(self) -> None:
        self.container.close()
        if self.owns_http:
            self.http.close()


def default_http() -> httpx.Client:
    """An HTTP client trusting the system's certificate authorities (and SSL_CERT_FILE when set)."""
    return httpx.Client(verify=ssl.create_default_context(), timeout=30.0)


def build_teams(
    settings: Settings,
    *,
    http: httpx.Client | None = None,
    clock: Clock | None = None,
    engine: Engine | None = None,
    sleep: Sleep = time.sleep,
    send_rate: float = 20.0,
) -> TeamsRuntime:
    """Build everything Teams needs from validated settings. Raises DatabaseUnavailable like `build`."""
    if not settings.teams_app_id or settings.teams_app_password is None or not settings.teams_tenant_id:
        raise ValueError("TEAMS_APP_ID, TEAMS_APP_PASSWORD and TEAMS_TENANT_ID are required for Teams")
    owns_http = http is None
    client = http or default_http()
    clock = clock or SystemClock()
    engine = engine or make_engine(settings.database_url)
    tokens = MsalTokenProvider(
        app_id=settings.teams_app_id,
        password=settings.teams_app_password.value,
        tenant_id=settings.teams_tenant_id,
        login_url=settings.teams_login_url,
        http=client,
    )
    graph = GraphClient(tokens=tokens, base_url=settings.graph_api_url, http=client, sleep=sleep)

    def teams_platform(retry: RetryPolicy | None) -> TeamsPlatform:
        return TeamsPlatform(
            engine=engine,
            connector=ConnectorClient(tokens=tokens, http=client, sleep=sleep, retry=retry),
            graph=graph,
            app_id=str(settings.teams_app_id),
            tenant_id=str(settings.teams_tenant_id),
            team_id=settings.teams_team_id,
            clock=clock,
            files_http=client,
        )

    platform = teams_platform(None)
    # The outbox sends with no retries of its own: a 429 becomes RateLimited and the row waits for Retry-After.
    sender = teams_platform(RetryPolicy(max_attempts=1))
    container = build(
        settings, platform=platform, clock=clock, engine=engine, delivery_platform=sender, send_rate=send_rate
    )
    planned = container.due_jobs["tick"]

    def tick(now: dt.datetime) -> int:
        platform.purge_pending_files(now)  # housekeeping: not counted as planned work
        return planned(now)

    container.due_jobs["tick"] = tick
    authenticator = BotFrameworkAuthenticator(
        app_id=settings.teams_app_id,
        openid_metadata_url=settings.teams_openid_metadata_url,
        http=client,
        clock=clock,
    )
    adapter = TeamsAdapter(
        bot=container.bot,
        platform=platform,
        authenticator=authenticator,
        engine=engine,
        clock=clock,
    )
    return TeamsRuntime(container=container, adapter=adapter, platform=platform, http=client, owns_http=owns_http)
