"""ChatPlatform on Slack's Web API: channels, invitations, posts, DMs and group DMs, with Slack errors made human."""

from __future__ import annotations

import logging
from collections.abc import Callable

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry import RetryHandler
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler

from bot.slack.render import message_payload
from handlers.errors import PlatformError, RateLimited
from handlers.ports import ChannelRef, Message

log = logging.getLogger(__name__)

# Slack error code -> what we tell the person (never the raw API response, which can contain message text).
FRIENDLY = {
    "missing_scope": "copbot is missing a Slack permission for that. Ask your Slack admin to reinstall the app.",
    "not_in_channel": "copbot isn't in that channel. Add it to the channel (`/invite @copbot`) and try again.",
    "channel_not_found": "Slack can't find that channel; it may have been deleted or made private.",
    "is_archived": "That channel is archived.",
    "restricted_action": "Your Slack workspace's settings don't allow copbot to do that. Ask a Slack admin.",
    "ratelimited": "Slack is busy right now; please try again in a minute.",
    "invalid_name": "Slack didn't accept that channel name.",
    "invalid_name_specials": "Slack didn't accept that channel name.",
    "user_not_found": "Slack can't find that person; their account may have been deactivated.",
    "user_is_restricted": "That person is a guest, so copbot can't add them to the channel.",
    "cannot_dm_bot": "That's a bot, so copbot can't message it.",
    "account_inactive": "copbot's Slack token has been revoked. Ask your Slack admin to reinstall the app.",
    "invalid_auth": "copbot's Slack token isn't valid. Ask whoever runs copbot to check SLACK_BOT_TOKEN.",
}
IGNORABLE = {"already_in_channel", "cant_invite_self", "not_in_channel", "already_archived"}
NAME_TAKEN_ATTEMPTS = 20


def make_client(*, token: str, base_url: str, wait_on_rate_limit: bool = True) -> WebClient:
    """A WebClient that retries dropped connections and, unless told not to, waits out 429s (Retry-After).

    Interactive replies wait (nothing is dropped); the outbox dispatcher passes `wait_on_rate_limit=False` and
    reschedules the row by Retry-After instead, so one slow channel never blocks the others.
    """
    handlers: list[RetryHandler] = [ConnectionErrorRetryHandler(max_retry_count=3)]
    if wait_on_rate_limit:
        handlers.insert(0, RateLimitErrorRetryHandler(max_retry_count=5))
    return WebClient(token=token, base_url=base_url, retry_handlers=handlers)


def _code(exc: SlackApiError) -> str:
    try:
        return str(exc.response.get("error") or "unknown_error")
    except Exception:
        return "unknown_error"


TRANSIENT = {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}


def platform_error(method: str, exc: SlackClientError) -> PlatformError:
    """Turn a Slack SDK error into a PlatformError with a safe message, logging only the method and code.

    A 429 that the client did not wait out (the dispatcher's client has no rate-limit retry handler) becomes
    `RateLimited` with Slack's Retry-After, so the outbox can move the row's next attempt instead of blocking.
    """
    if isinstance(exc, SlackApiError):
        code = _code(exc)
        log.warning("slack %s failed: %s", method, code)
        if exc.response.status_code == 429:
            retry_after = float(exc.response.headers.get("Retry-After", exc.response.headers.get("retry-after", 1)))
            return RateLimited(retry_after)
        message = FRIENDLY.get(code, f"Slack refused that ({code}). Please try again, or tell an admin.")
        return PlatformError(message, code=code, transient=code in TRANSIENT)
    log.warning("slack %s failed: %s", method, type(exc).__name__)
    return PlatformError(
        "I couldn't reach Slack just now. Please try again in a minute.", code="connection", transient=True
    )


class SlackPlatform:
    """The ChatPlatform port on Slack."""

    name = "slack"

    def __init__(self, client: WebClient) -> None:
        self.client = client

    def create_channel(self, *, name: str, topic: str, purpose: str) -> ChannelRef:
        candidate = name
        for attempt in range(1, NAME_TAKEN_ATTEMPTS + 1):
            try:
                response = self.client.conversations_create(name=candidate, is_private=False)
                break
            except SlackApiError as exc:
                if _code(exc) != "name_taken" or attempt == NAME_TAKEN_ATTEMPTS:
                    raise platform_error("conversations.create", exc) from exc
                suffix = f"-{attempt + 1}"
                candidate = name[: 80 - len(suffix)] + suffix
            except SlackClientError as exc:
                raise platform_error("conversations.create", exc) from exc
        channel = response["channel"]
        channel_id = str(channel["id"])
        try:
            self.client.conversations_setTopic(channel=channel_id, topic=topic)
            self.client.conversations_setPurpose(channel=channel_id, purpose=purpose)
        except SlackClientError as exc:  # the channel exists; a missing topic is not worth failing for
            platform_error("conversations.setTopic/setPurpose", exc)
        return ChannelRef(id=channel_id, name=str(channel.get("name", candidate)))

    def find_channel(self, *, name: str) -> ChannelRef | None:
        # A channel copbot made has copbot in it (`is_member`); one someone else made with the name is not adopted.
        cursor = ""
        try:
            while True:
                page = self.client.conversations_list(
                    types="public_channel", exclude_archived=True, limit=1000, cursor=cursor or None
                )
                for channel in page.get("channels") or []:
                    if channel.get("name") == name and channel.get("is_member"):
                        return ChannelRef(id=str(channel["id"]), name=name)
                cursor = str((page.get("response_metadata") or {}).get("next_cursor") or "")
                if not cursor:
                    return None
        except SlackClientError as exc:
            raise platform_error("conversations.list", exc) from exc

    def _tolerant(self, method: str, call: Callable[[], object]) -> None:
        """Run a call whose "already done" errors (IGNORABLE) mean success; others become PlatformError."""
        try:
            call()
        except SlackApiError as exc:
            if _code(exc) not in IGNORABLE:
                raise platform_error(method, exc) from exc
        except SlackClientError as exc:
            raise platform_error(method, exc) from exc

    def invite(self, *, channel_id: str, user_ids: list[str]) -> None:
        users = ",".join(user_ids)
        self._tolerant(
            "conversations.invite", lambda: self.client.conversations_invite(channel=channel_id, users=users)
        )

    def remove(self, *, channel_id: str, user_id: str) -> None:
        self._tolerant("conversations.kick", lambda: self.client.conversations_kick(channel=channel_id, user=user_id))

    def archive_channel(self, *, channel_id: str) -> None:
        self._tolerant("conversations.archive", lambda: self.client.conversations_archive(channel=channel_id))

    def post(self, *, channel_id: str, message: Message) -> str:
        try:
            response = self.client.chat_postMessage(channel=channel_id, **message_payload(message), unfurl_links=False)
        except SlackClientError as exc:
            raise platform_error("chat.postMessage", exc) from exc
        return str(response["ts"])

    def update_message(self, *, channel_id: str, message_id: str, message: Message) -> None:
        try:
            self.client.chat_update(channel=channel_id, ts=message_id, **message_payload(message))
        except SlackClientError as exc:
            raise platform_error("chat.update", exc) from exc

    def send_dm(self, *, user_id: str, message: Message) -> str:
        # Posting to a user id delivers to the app's DM with them (the Messages tab of App Home).
        return self.post(channel_id=user_id, message=message)

    def send_group_dm(self, *, user_ids: list[str], message: Message) -> str:
        # One person is their DM. Several: conversations.open with a user list opens (or finds) the group DM of
        # those people and copbot (`mpim:write`), which is where an introduction's conversation starts.
        people = list(dict.fromkeys(user_ids))
        if len(people) == 1:
            return self.send_dm(user_id=people[0], message=message)
        try:
            opened = self.client.conversations_open(users=",".join(people))
        except SlackClientError as exc:
            raise platform_error("conversations.open", exc) from exc
        return self.post(channel_id=str(opened["channel"]["id"]), message=message)

    def upload_file(self, *, user_id: str, filename: str, content: bytes, title: str) -> None:
        # Files need a real conversation id (not a user id): the DM's, from conversations.open.
        try:
            opened = self.client.conversations_open(users=user_id)
            channel_id = str(opened["channel"]["id"])
            self.client.files_upload_v2(channel=channel_id, content=content, filename=filename, title=title)
        except SlackClientError as exc:
            raise platform_error("files.upload", exc) from exc
