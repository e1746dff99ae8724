"""A small Microsoft Graph client for what Teams CoPs need: make a channel, read team and channel members.

Calls use application permissions granted per team through resource-specific consent (see `package.py`), a Graph
token from `tokens.py`, and the shared retry policy in `bot.teams._http`. Lists follow `@odata.nextLink`, but only
on the configured Graph origin, so the bearer token never goes anywhere else. Failures raise `GraphError`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from bot.teams._http import RetryPolicy, Sleep, TeamsApiError, optional_str, require_secure_url, send
from bot.teams.tokens import GraphTokenSource

DEFAULT_GRAPH_API_URL = "https://graph.microsoft.com/v1.0"


class GraphError(TeamsApiError):
    """A Graph call failed: HTTP `status` and Graph's error `code` (e.g. `NameAlreadyExists`, `Forbidden`)."""


@dataclass(frozen=True)
class GraphMember:
    """One `aadUserConversationMember` of a team or channel."""

    membership_id: str
    user_id: str | None
    display_name: str | None
    email: str | None
    tenant_id: str | None
    roles: tuple[str, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GraphMember:
        """Read one member object from a Graph `value` array."""
        roles = data.get("roles")
        return cls(
            membership_id=str(data["id"]),
            user_id=optional_str(data.get("userId")),
            display_name=optional_str(data.get("displayName")),
            email=optional_str(data.get("email")),
            tenant_id=optional_str(data.get("tenantId")),
            roles=tuple(str(r) for r in roles) if isinstance(roles, list) else (),
            raw=dict(data),
        )


class GraphClient:
    """Microsoft Graph calls at `base_url` (`GRAPH_API_URL`, e.g. `https://graph.microsoft.com/v1.0`)."""

    def __init__(
        self,
        *,
        tokens: GraphTokenSource,
        base_url: str = DEFAULT_GRAPH_API_URL,
        http: httpx.Client | None = None,
        retry: RetryPolicy | None = None,
        sleep: Sleep = time.sleep,
    ) -> None:
        self._tokens = tokens
        self._base = require_secure_url(base_url, what="GRAPH_API_URL").rstrip("/")
        self._origin = _origin(self._base)
        self._http = http or httpx.Client(timeout=30.0)
        self._retry = retry or RetryPolicy()
        self._sleep = sleep

    def create_channel(self, team_id: str, display_name: str, description: str) -> tuple[str, str]:
        """Create a standard channel in a team; its (channel id, web URL)."""
        body = {"displayName": display_name, "description": description, "membershipType": "standard"}
        channel = self._call("POST", f"{self._team_url(team_id)}/channels", json=body).json()
        return str(channel["id"]), str(channel.get("webUrl") or "")

    def list_channels(self, team_id: str) -> list[tuple[str, str, str]]:
        """A team's channels as (id, display name, web URL) (needs `Channel.ReadBasic.All` or the team's RSC)."""
        return [
            (str(item.get("id") or ""), str(item.get("displayName") or ""), str(item.get("webUrl") or ""))
            for item in self._items(f"{self._team_url(team_id)}/channels")
        ]

    def list_team_members(self, team_id: str) -> Iterator[GraphMember]:
        """Every member of a team (needs `TeamMember.Read.Group`)."""
        return self._members(f"{self._team_url(team_id)}/members")

    def list_channel_members(self, team_id: str, channel_id: str) -> Iterator[GraphMember]:
        """Every member of a channel (needs `ChannelMember.Read.Group`)."""
        return self._members(f"{self._team_url(team_id)}/channels/{quote(channel_id, safe='')}/members")

    # -- plumbing ----------------------------------------------------------------------------------------------

    def _members(self, url: str) -> Iterator[GraphMember]:
        return (GraphMember.from_json(item) for item in self._items(url))

    def _items(self, url: str) -> Iterator[dict[str, Any]]:
        """Every item of a Graph collection, following `@odata.nextLink` (only to Graph's own origin)."""
        next_url: str | None = url
        while next_url:
            page = self._call("GET", next_url).json()
            yield from page.get("value") or []
            link = page.get("@odata.nextLink")
            if link is not None and (not isinstance(link, str) or _origin(link) != self._origin):
                raise GraphError(502, "foreign_next_link")
            next_url = link

    def _call(self, method: str, url: str, *, json: Any = None) -> httpx.Response:
        return send(
            self._http,
            method,
            url,
            token=self._tokens.graph_token,
            error=GraphError,
            policy=self._retry,
            sleep=self._sleep,
            json=json,
        )

    def _team_url(self, team_id: str) -> str:
        return f"{self._base}/teams/{quote(team_id, safe='')}"


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc.lower()
