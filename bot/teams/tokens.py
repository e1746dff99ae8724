"""Outbound access tokens for Teams: msal client credentials for the Bot Connector and Microsoft Graph.

One single-tenant `msal.ConfidentialClientApplication` (authority `<login_url>/<tenant_id>`) serves both scopes;
msal caches the tokens and refreshes them shortly before they expire. msal's HTTP goes through the `httpx.Client`
given here (or a private one), and instance discovery is switched off, so with a loopback `login_url` nothing ever
leaves the machine: msal then only reads `<login_url>/<tenant>/v2.0/.well-known/openid-configuration` and posts to
the `token_endpoint` it names. msal insists on an `https` authority, which is why the login fake speaks TLS.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
import msal

log = logging.getLogger(__name__)

BOT_CONNECTOR_SCOPE = "https://api.botframework.com/.default"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
DEFAULT_LOGIN_URL = "https://login.microsoftonline.com"


class TokenError(Exception):
    """The identity platform refused to issue a token. `code` is the OAuth error (e.g. `invalid_client`)."""

    def __init__(self, code: str, *, scope: str) -> None:
        super().__init__(code, scope)
        self.code = code
        self.scope = scope

    def __str__(self) -> str:
        return f"could not get a token for {self.scope}: {self.code}"


class ConnectorTokenSource(Protocol):
    """Anything that can hand out a Bot Connector bearer token (the fakes and `MsalTokenProvider`)."""

    def connector_token(self) -> str: ...


class GraphTokenSource(Protocol):
    """Anything that can hand out a Microsoft Graph bearer token."""

    def graph_token(self) -> str: ...


class MsalTokenProvider:
    """Client-credentials tokens for the bot's app registration, cached by msal.

    The msal application is built on first use, because building it already fetches the tenant's OpenID
    configuration and the composition root must not touch the network.
    """

    def __init__(
        self,
        *,
        app_id: str,
        password: str,
        tenant_id: str,
        login_url: str = DEFAULT_LOGIN_URL,
        http: httpx.Client | None = None,
    ) -> None:
        if not app_id or not password or not tenant_id:
            raise ValueError("app_id, password and tenant_id are all required")
        parts = urlsplit(login_url)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError(f"login_url must be an https URL (msal refuses anything else): {login_url!r}")
        self._app_id = app_id
        self._password = password
        self._authority = f"{login_url.rstrip('/')}/{tenant_id}"
        self._http = http
        self._app: msal.ConfidentialClientApplication | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MsalTokenProvider(app_id={self._app_id!r}, authority={self._authority!r}, password=<hidden>)"

    def connector_token(self) -> str:
        """A bearer token for the Bot Connector (`serviceUrl` calls)."""
        return self.token(BOT_CONNECTOR_SCOPE)

    def graph_token(self) -> str:
        """A bearer token for Microsoft Graph (application permissions, including resource-specific consent)."""
        return self.token(GRAPH_SCOPE)

    def token(self, scope: str) -> str:
        """A bearer token for one `.default` scope, from msal's cache when it is still good."""
        try:
            result: Mapping[str, Any] = self._application().acquire_token_for_client(scopes=[scope])
        except httpx.HTTPError as exc:
            log.error("token request for %s failed: %s", scope, type(exc).__name__)
            raise TokenError("login_unreachable", scope=scope) from exc
        except ValueError as exc:  # msal: the authority's OpenID configuration could not be read (bad tenant?)
            log.error("token request for %s failed: the authority was refused", scope)
            raise TokenError("invalid_authority", scope=scope) from exc
        access_token = result.get("access_token")
        if isinstance(access_token, str) and access_token:
            return access_token
        code = str(result.get("error") or "no_access_token")
        # error_description can be long and carries correlation ids; the code is enough for the log.
        log.error("token request for %s failed: %s", scope, code)
        raise TokenError(code, scope=scope)

    def _application(self) -> msal.ConfidentialClientApplication:
        with self._lock:
            if self._app is None:
                self._app = msal.ConfidentialClientApplication(
                    client_id=self._app_id,
                    client_credential=self._password,
                    authority=self._authority,
                    # Never ask login.microsoftonline.com about the authority: the configured one is trusted.
                    instance_discovery=False,
                    http_client=_MsalHttpClient(self._http or httpx.Client(timeout=30.0)),
                )
            return self._app


class _MsalHttpClient:
    """The small `requests`-like interface msal calls (`get`/`post` returning status_code/text/headers)."""

    def __init__(self, http: httpx.Client) -> None:
        self._http = http

    def post(
        self,
        url: str,
        params: Mapping[str, str] | None = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        if isinstance(data, str | bytes):
            return self._http.post(url, params=params, content=data, headers=headers, timeout=_timeout(kwargs))
        return self._http.post(url, params=params, data=data, headers=headers, timeout=_timeout(kwargs))

    def get(
        self,
        url: str,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        return self._http.get(url, params=params, headers=headers, timeout=_timeout(kwargs))

    def close(self) -> None:
        """msal may close its client; the httpx client belongs to whoever made it, so do nothing."""


def _timeout(kwargs: Mapping[str, Any]) -> float | httpx.Timeout:
    value = kwargs.get("timeout")
    return value if isinstance(value, int | float | httpx.Timeout) else 30.0
