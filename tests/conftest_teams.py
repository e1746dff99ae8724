"""Pytest fixtures for the Teams building blocks: loopback fakes of Microsoft's services and clients aimed at them.

Register with `pytest_plugins = ["tests.conftest_teams"]` (or `-p tests.conftest_teams`). Every fake that saw a
request break the Bot Connector swagger or the fakes' other checks fails the test at teardown.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import httpx
import pytest

from bot.teams.auth import BotFrameworkAuthenticator
from bot.teams.connector import ConnectorClient
from bot.teams.graph import GraphClient
from bot.teams.tokens import MsalTokenProvider
from tests.fakes.teams import (
    FakeTeamsCloud,
    RecordingSleep,
    SettableClock,
    SigningKey,
    TlsMaterial,
    fake_teams_cloud,
    make_tls_material,
)


@pytest.fixture(scope="session")
def teams_tls() -> TlsMaterial:
    """A throw-away CA and 127.0.0.1 certificate (the login fake must speak TLS: msal wants https)."""
    return make_tls_material()


@pytest.fixture(scope="session")
def teams_signing_key() -> SigningKey:
    """The RSA key the fake Bot Framework channel publishes and signs with (endorses `msteams`)."""
    return SigningKey.generate("bf-key-1")


@pytest.fixture(scope="session")
def teams_attacker_key() -> SigningKey:
    """An RSA key nobody published, for forged-token tests."""
    return SigningKey.generate("bf-key-1")


@pytest.fixture
def teams_cloud(teams_tls: TlsMaterial, teams_signing_key: SigningKey) -> Iterator[FakeTeamsCloud]:
    """Fresh OpenID/JWKS, login, Bot Connector and Graph fakes for one bot registration."""
    with fake_teams_cloud(tls=teams_tls, signing_keys=[teams_signing_key]) as cloud:
        yield cloud
        problems = cloud.violations()
    assert not problems, "the Teams fakes saw bad requests:\n" + "\n".join(problems)


@pytest.fixture
def teams_http(teams_tls: TlsMaterial) -> Iterator[httpx.Client]:
    """An httpx client that trusts the fakes' throw-away CA (and nothing else)."""
    with httpx.Client(verify=teams_tls.client_context(), timeout=10.0) as client:
        yield client


@pytest.fixture
def teams_clock() -> SettableClock:
    return SettableClock(dt.datetime(2025, 3, 3, 9, 0, tzinfo=dt.UTC))


@pytest.fixture
def teams_sleep() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
def teams_tokens(teams_cloud: FakeTeamsCloud, teams_http: httpx.Client) -> MsalTokenProvider:
    """msal client-credentials tokens from the login fake."""
    return MsalTokenProvider(
        app_id=teams_cloud.app_id,
        password=teams_cloud.app_password,
        tenant_id=teams_cloud.tenant_id,
        login_url=teams_cloud.login.login_url,
        http=teams_http,
    )


@pytest.fixture
def teams_authenticator(
    teams_cloud: FakeTeamsCloud, teams_http: httpx.Client, teams_clock: SettableClock
) -> BotFrameworkAuthenticator:
    return BotFrameworkAuthenticator(
        app_id=teams_cloud.app_id,
        openid_metadata_url=teams_cloud.keys.metadata_url,
        http=teams_http,
        clock=teams_clock,
    )


@pytest.fixture
def teams_connector(
    teams_tokens: MsalTokenProvider, teams_http: httpx.Client, teams_sleep: RecordingSleep
) -> ConnectorClient:
    return ConnectorClient(tokens=teams_tokens, http=teams_http, sleep=teams_sleep)


@pytest.fixture
def teams_graph(
    teams_cloud: FakeTeamsCloud,
    teams_tokens: MsalTokenProvider,
    teams_http: httpx.Client,
    teams_sleep: RecordingSleep,
) -> GraphClient:
    return GraphClient(tokens=teams_tokens, base_url=teams_cloud.graph.base_url, http=teams_http, sleep=teams_sleep)
