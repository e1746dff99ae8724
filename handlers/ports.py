"""Ports the core depends on (`typing.Protocol`s) and the neutral message types it speaks."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

# ---------------------------------------------------------------------------------------------------------------
# Neutral messages. Text is literal, with a small platform-neutral markup: *bold*, _italic_, `code`, a line starting
# "> " (a quote), <@USER_ID> for a person and <#CHANNEL_ID> for a channel. Every other `<`, `>` and `&` is literal,
# whoever typed it: the core never pre-escapes, and each adapter's one rendering function makes the text safe for its
# platform (Slack mrkdwn escapes, Teams markdown/HTML escapes and <at> mentions, console control characters shown).
#
# What a person sees of a Message, on every platform: the title as a header; then the sections when there are any
# (they are the whole body, and `text` is only the notification / plain-text fallback, which Slack does not show
# once blocks exist), otherwise `text`; then the buttons. So a message with sections must say everything in them.
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Button:
    """A button: `action_id` names the handler, `value` is its argument (never personal data)."""

    label: str
    action_id: str
    value: str = ""
    style: Literal["default", "primary", "danger"] = "default"
    url: str | None = None


@dataclass(frozen=True)
class Section:
    """A block of text, optionally with label/value fields shown as a grid."""

    text: str = ""
    fields: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class FormField:
    """One input of a form.

    `users` is a people picker (Slack `multi_users_select`, Teams' people picker, the console's `@name`): its
    `initial` is platform user ids separated by spaces; the adapter submits the people chosen as mentions
    (`<@id> <@id>`), so the core can tell a person the platform named from a word someone typed.
    """

    name: str
    label: str
    kind: Literal["text", "multiline", "select", "multiselect", "checkbox", "users"] = "text"
    required: bool = False
    initial: str = ""
    options: tuple[tuple[str, str], ...] = ()  # (value, label)
    max_length: int | None = None
    hint: str = ""


@dataclass(frozen=True)
class Form:
    """A form to open for the person (Slack modal, Teams Adaptive Card dialog, console questions)."""

    form_id: str
    title: str
    fields: tuple[FormField, ...]
    submit_label: str = "Save"
    context: str = ""  # opaque state carried back on submit (ids only, never personal data)


@dataclass(frozen=True)
class Message:
    """A neutral message: a plain-text fallback plus optional rich parts.

    `chat_with` names people (user ids) the recipient is invited to start a conversation with, e.g. an
    introduction's partners: a platform that can link to a new chat with them (Teams' deep link) adds a button;
    one whose mentions are already links (Slack) or that has no chats (console) may ignore it.
    """

    text: str
    title: str | None = None
    sections: tuple[Section, ...] = ()
    buttons: tuple[Button, ...] = ()
    chat_with: tuple[str, ...] = ()


Visibility = Literal["private", "public"]


@dataclass(frozen=True)
class Reply:
    """What the core answers to one invocation: a message to the caller (private or in the channel) or a form."""

    message: Message | None = None
    visibility: Visibility = "private"
    form: Form | None = None

    @staticmethod
    def private(text: str, **kwargs: object) -> Reply:
        """A private (ephemeral) reply to the caller."""
        return Reply(message=Message(text=text, **kwargs), visibility="private")  # type: ignore[arg-type]

    @staticmethod
    def public(text: str, **kwargs: object) -> Reply:
        """A reply everyone in the channel sees."""
        return Reply(message=Message(text=text, **kwargs), visibility="public")  # type: ignore[arg-type]


@dataclass(frozen=True)
class ChannelRef:
    """A channel the platform made or knows."""

    id: str
    name: str
    url: str | None = None


@dataclass(frozen=True)
class Actor:
    """The person behind an invocation, as the platform identifies them."""

    platform: str
    workspace_id: str
    user_id: str
    display_name: str = ""


@dataclass(frozen=True)
class Invocation:
    """One command as typed by a person, in a channel (or a DM), on a platform."""

    actor: Actor
    text: str
    channel_id: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------------------
# Ports
# ---------------------------------------------------------------------------------------------------------------


@runtime_checkable
class Clock(Protocol):
    """Where the core gets the time: always timezone-aware UTC."""

    def now(self) -> dt.datetime: ...


class SystemClock:
    """The real clock."""

    def now(self) -> dt.datetime:
        """The current time, timezone-aware UTC."""
        return dt.datetime.now(dt.UTC)


@runtime_checkable
class ChatPlatform(Protocol):
    """What the core asks of a chat platform. Each adapter (console, Slack, Teams) implements it.

    Methods raise `handlers.errors.PlatformError` with a message safe to show a person when the platform refuses.
    """

    name: str

    def create_channel(self, *, name: str, topic: str, purpose: str) -> ChannelRef:
        """Make a public channel called `name` (or the next free variant) with that topic and purpose."""
        ...

    def find_channel(self, *, name: str) -> ChannelRef | None:
        """The live channel called exactly `name` that copbot made (it is a member), if there is one: how a create
        that stopped after making its channel, but before recording it, is finished without a second channel."""
        ...

    def invite(self, *, channel_id: str, user_ids: list[str]) -> None:
        """Add people to a channel; people already in it are not an error."""
        ...

    def remove(self, *, channel_id: str, user_id: str) -> None:
        """Take a person out of a channel; a person not in it is not an error."""
        ...

    def archive_channel(self, *, channel_id: str) -> None:
        """Archive a channel."""
        ...

    def post(self, *, channel_id: str, message: Message) -> str:
        """Post a message in a channel; returns the platform's message id."""
        ...

    def send_dm(self, *, user_id: str, message: Message) -> str:
        """Send a person a direct message; returns the platform's message id."""
        ...

    def send_group_dm(self, *, user_ids: list[str], message: Message) -> str:
        """Open one conversation with these people (and copbot) and send `message` there; returns its message id.

        A platform without group conversations that a bot can start raises `PlatformError` with code
        `unsupported` (not transient), and the caller falls back to one DM each."""
        ...

    def update_message(self, *, channel_id: str, message_id: str, message: Message) -> None:
        """Replace a message copbot posted (a story card after an edit or a withdrawal) with `message`."""
        ...

    def upload_file(self, *, user_id: str, filename: str, content: bytes, title: str) -> None:
        """Send a person a file privately (their DM with copbot; the console writes it under ./exports/)."""
        ...
