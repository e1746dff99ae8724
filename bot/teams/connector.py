"""A small Bot Connector v3 REST client: send, reply, update and delete activities, open 1:1 chats, read members.

Every call goes to the conversation's `serviceUrl` (from the inbound activity, or a stored conversation reference)
with a Bot Connector bearer token, through the shared retry policy in `bot.teams._http`. Ids in paths are
percent-encoded whole, as Teams ids hold `:`, `@` and `;`. Failures raise `ConnectorError(status, code)`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from bot.teams._http import RetryPolicy, Sleep, TeamsApiError, optional_str, require_secure_url, send
from bot.teams.tokens import ConnectorTokenSource


class ConnectorError(TeamsApiError):
    """A Bot Connector call failed: HTTP `status` and the connector's error `code` (e.g. `ServiceError`)."""


@dataclass(frozen=True)
class ConversationMember:
    """A member of a Teams conversation as the Bot Connector describes them."""

    id: str
    name: str | None = None
    aad_object_id: str | None = None
    user_principal_name: str | None = None
    email: str | None = None
    tenant_id: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ConversationMember:
        """Read one `TeamsChannelAccount` (older payloads say `objectId`, newer `aadObjectId`)."""
        return cls(
            id=str(data["id"]),
            name=optional_str(data.get("name")),
            aad_object_id=optional_str(data.get("aadObjectId") or data.get("objectId")),
            user_principal_name=optional_str(data.get("userPrincipalName")),
            email=optional_str(data.get("email")),
            tenant_id=optional_str(data.get("tenantId")),
            raw=dict(data),
        )


class ConnectorClient:
    """Bot Connector REST calls for one bot (its token source); the `service_url` is given per call."""

    def __init__(
        self,
        *,
        tokens: ConnectorTokenSource,
        http: httpx.Client | None = None,
        retry: RetryPolicy | None = None,
        sleep: Sleep = time.sleep,
    ) -> None:
        self._tokens = tokens
        self._http = http or httpx.Client(timeout=30.0)
        self._retry = retry or RetryPolicy()
        self._sleep = sleep

    def send_to_conversation(self, service_url: str, conversation_id: str, activity: Mapping[str, Any]) -> str | None:
        """Post a new activity to a conversation; the new activity id (None when the channel gave none, 202)."""
        url = self._conversation_url(service_url, conversation_id) + "/activities"
        return _resource_id(self._call("POST", url, json=dict(activity)))

    def reply_to_activity(
        self, service_url: str, conversation_id: str, activity_id: str, activity: Mapping[str, Any]
    ) -> str | None:
        """Reply to an activity (in a channel: in its thread); the new activity id, or None."""
        url = self._activity_url(service_url, conversation_id, activity_id)
        body = {"replyToId": activity_id, **activity}
        return _resource_id(self._call("POST", url, json=body))

    def update_activity(
        self, service_url: str, conversation_id: str, activity_id: str, activity: Mapping[str, Any]
    ) -> None:
        """Replace the content of an activity the bot sent earlier."""
        url = self._activity_url(service_url, conversation_id, activity_id)
        self._call("PUT", url, json={"id": activity_id, **activity})

    def delete_activity(self, service_url: str, conversation_id: str, activity_id: str) -> None:
        """Delete an activity the bot sent earlier."""
        self._call("DELETE", self._activity_url(service_url, conversation_id, activity_id))

    def create_conversation(
        self,
        service_url: str,
        *,
        bot_id: str,
        tenant_id: str,
        member_id: str,
        activity: Mapping[str, Any] | None = None,
    ) -> str:
        """Open (or find) the 1:1 chat between the bot (`28:<app id>`) and one member; its conversation id.

        Teams needs the tenant both as `tenantId` and in `channelData`. An `activity`, when given, is posted as the
        first message of the conversation in the same call.
        """
        body: dict[str, Any] = {
            "isGroup": False,
            "bot": {"id": bot_id},
            "members": [{"id": member_id}],
            "tenantId": tenant_id,
            "channelData": {"tenant": {"id": tenant_id}},
        }
        if activity is not None:
            body["activity"] = dict(activity)
        url = _base(service_url) + "/v3/conversations"
        conversation_id = _resource_id(self._call("POST", url, json=body))
        if not conversation_id:
            raise ConnectorError(502, "no_conversation_id")
        return conversation_id

    def create_channel_thread(
        self, service_url: str, *, channel_id: str, tenant_id: str, activity: Mapping[str, Any]
    ) -> tuple[str, str | None]:
        """Start a new thread in a Teams channel with `activity` as its first message (what the Bot Framework SDK's
        `TeamsInfo.sendMessageToTeamsChannel` does); the thread's conversation id (`<channel>;messageid=<id>`) and
        the activity id."""
        body: dict[str, Any] = {
            "isGroup": True,
            "channelData": {"channel": {"id": channel_id}, "tenant": {"id": tenant_id}},
            "tenantId": tenant_id,
            "activity": dict(activity),
        }
        response = self._call("POST", _base(service_url) + "/v3/conversations", json=body)
        thread_id = _resource_id(response)
        if not thread_id:
            raise ConnectorError(502, "no_conversation_id")
        activity_id = response.json().get("activityId")
        return thread_id, activity_id if isinstance(activity_id, str) and activity_id else None

    def get_conversation_member(self, service_url: str, conversation_id: str, member_id: str) -> ConversationMember:
        """One member of a conversation (for a team: its general channel's id), by `29:…` id or Entra object id."""
        url = f"{self._conversation_url(service_url, conversation_id)}/members/{quote(member_id, safe='')}"
        return ConversationMember.from_json(self._call("GET", url).json())

    def get_conversation_members(
        self, service_url: str, conversation_id: str, *, page_size: int | None = None
    ) -> Iterator[ConversationMember]:
        """Every member of a conversation (for a team: its general channel's id), page by page."""
        url = self._conversation_url(service_url, conversation_id) + "/pagedmembers"
        continuation: str | None = None
        while True:
            params: dict[str, str] = {}
            if page_size is not None:
                params["pageSize"] = str(page_size)
            if continuation:
                params["continuationToken"] = continuation
            page = self._call("GET", url, params=params).json()
            for member in page.get("members") or []:
                yield ConversationMember.from_json(member)
            continuation = page.get("continuationToken")
            if not continuation:
                return

    # -- plumbing ----------------------------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        return send(
            self._http,
            method,
            url,
            token=self._tokens.connector_token,
            error=ConnectorError,
            policy=self._retry,
            sleep=self._sleep,
            json=json,
            params=params,
        )

    @staticmethod
    def _conversation_url(service_url: str, conversation_id: str) -> str:
        return f"{_base(service_url)}/v3/conversations/{quote(conversation_id, safe='')}"

    @classmethod
    def _activity_url(cls, service_url: str, conversation_id: str, activity_id: str) -> str:
        return f"{cls._conversation_url(service_url, conversation_id)}/activities/{quote(activity_id, safe='')}"


def _base(service_url: str) -> str:
    return require_secure_url(service_url, what="serviceUrl").rstrip("/")


def _resource_id(response: httpx.Response) -> str | None:
    if not response.content:
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    value = body.get("id") if isinstance(body, Mapping) else None
    return value if isinstance(value, str) and value else None
