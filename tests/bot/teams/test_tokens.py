"""msal client-credentials tokens against the loopback login fake (TLS, no instance discovery)."""

from __future__ import annotations

import logging
import socket

import httpx
import pytest

from bot.teams.tokens import BOT_CONNECTOR_SCOPE, GRAPH_SCOPE, MsalTokenProvider, TokenError
from tests.fakes.teams import FakeTeamsCloud


def test_a_connector_token_comes_from_the_login_fake(
    teams_tokens: MsalTokenProvider, teams_cloud: FakeTeamsCloud
) -> None:
    token = teams_tokens.connector_token()

    assert teams_cloud.login.scope_of(token) == BOT_CONNECTOR_SCOPE
    [request] = teams_cloud.login.token_requests
    assert request["grant_type"] == "client_credentials"
    assert request["client_id"] == teams_cloud.app_id
    assert request["scope"] == BOT_CONNECTOR_SCOPE


def test_tokens_are_cached_per_scope(teams_tokens: MsalTokenProvider, teams_cloud: FakeTeamsCloud) -> None:
    first = teams_tokens.connector_token()
    graph = teams_tokens.graph_token()

    assert teams_tokens.connector_token() == first
    assert teams_tokens.graph_token() == graph
    assert teams_cloud.login.scope_of(graph) == GRAPH_SCOPE
    assert [r["scope"] for r in teams_cloud.login.token_requests] == [BOT_CONNECTOR_SCOPE, GRAPH_SCOPE]
    assert teams_cloud.login.discovery_requests == 1


def test_a_token_near_expiry_is_fetched_again(teams_tokens: MsalTokenProvider, teams_cloud: FakeTeamsCloud) -> None:
    teams_cloud.login.expires_in = 60  # msal refreshes tokens with under five minutes left

    first = teams_tokens.connector_token()
    second = teams_tokens.connector_token()

    assert first != second
    assert len(teams_cloud.login.token_requests) == 2


def test_a_wrong_password_raises_without_revealing_it(
    teams_cloud: FakeTeamsCloud, teams_http: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    provider = MsalTokenProvider(
        app_id=teams_cloud.app_id,
        password="wrong-password-value",
        tenant_id=teams_cloud.tenant_id,
        login_url=teams_cloud.login.login_url,
        http=teams_http,
    )

    with caplog.at_level(logging.DEBUG), pytest.raises(TokenError) as caught:
        provider.connector_token()

    assert caught.value.code == "invalid_client"
    assert "wrong-password-value" not in str(caught.value)
    assert "wrong-password-value" not in repr(provider)
    assert "wrong-password-value" not in caplog.text


def test_an_unknown_tenant_fails_on_first_use(teams_cloud: FakeTeamsCloud, teams_http: httpx.Client) -> None:
    provider = MsalTokenProvider(
        app_id=teams_cloud.app_id,
        password=teams_cloud.app_password,
        tenant_id="00000000-0000-0000-0000-000000000000",
        login_url=teams_cloud.login.login_url,
        http=teams_http,
    )

    with pytest.raises(TokenError) as caught:
        provider.graph_token()

    assert caught.value.code == "invalid_authority"


def test_an_unreachable_login_service_is_a_token_error(teams_http: httpx.Client) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound but not listening: connections are refused
        port = closed.getsockname()[1]
        provider = MsalTokenProvider(
            app_id="a", password="p", tenant_id="t", login_url=f"https://127.0.0.1:{port}", http=teams_http
        )

        with pytest.raises(TokenError) as caught:
            provider.connector_token()

    assert caught.value.code == "login_unreachable"


def test_constructing_a_provider_touches_no_network(teams_cloud: FakeTeamsCloud, teams_http: httpx.Client) -> None:
    MsalTokenProvider(
        app_id=teams_cloud.app_id,
        password=teams_cloud.app_password,
        tenant_id=teams_cloud.tenant_id,
        login_url=teams_cloud.login.login_url,
        http=teams_http,
    )

    assert teams_cloud.login.discovery_requests == 0


@pytest.mark.parametrize("login_url", ["http://127.0.0.1:1", "login.microsoftonline.com", ""])
def test_the_login_url_must_be_https(login_url: str) -> None:
    with pytest.raises(ValueError, match="https"):
        MsalTokenProvider(app_id="a", password="p", tenant_id="t", login_url=login_url)
