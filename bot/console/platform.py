"""The console's simulated workspace: channels, members and posts, printed to a text stream.

What is printed follows the neutral markup contract (handlers/ports.py) as Slack shows it: literal text as it is,
mentions as `@name` / `#channel`, `*bold*` kept as typed; a message prints its title (unless its first line already
says it), then its sections when it has any (its `text` is then only the notification), else its `text`. Nothing
that reaches the terminal can drive it: control characters (ANSI escape sequences, carriage returns, NUL, C1
controls) and bidirectional overrides in any text, whoever typed it, are printed as visible escapes (`\\x1b`,
`\\u202e`) instead (`printable`).
"""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from handlers.errors import PlatformError
from handlers.ports import Button, ChannelRef, Message

_USER = re.compile(r"<@([^<>|]+)(?:\|[^<>]*)?>")
_CHANNEL = re.compile(r"<#([^<>|]+)(?:\|([^<>]*))?>")
DM = "dm:"  # where a DM between copbot and one person is: `dm:<user>`
GROUP_DM = "group:"  # where a group DM of copbot and several people is: `group:<user>,<user>…`
# Control characters other than a line break or a tab, and the invisible marks that reorder what a terminal shows.
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """Text safe to write to a terminal: every control character shown as a visible escape, never acted on."""

    def visible(match: re.Match[str]) -> str:
        code = ord(match.group())
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"

    return _UNPRINTABLE.sub(visible, text)


@dataclass
class ConsoleChannel:
    id: str
    name: str
    topic: str = ""
    purpose: str = ""
    members: set[str] = field(default_factory=set)
    archived: bool = False


@dataclass(frozen=True)
class Posted:
    """A message in the console transcript, addressable by id (m1, m2, …) for :react and :click."""

    id: str
    where: str  # a channel id, "dm:<user>" or "group:<user>,<user>…"
    author: str
    text: str
    buttons: tuple[Button, ...] = ()

    def visible_to(self, user: str) -> bool:
        """Whether this person can see the message: a DM only its person, a group DM only its people."""
        if self.where.startswith(DM):
            return self.where == DM + user
        if self.where.startswith(GROUP_DM):
            return user in group_members(self.where)
        return True


def group_members(where: str) -> list[str]:
    """The people of a group DM, from where its messages are (`group:alice,bob`)."""
    return where.removeprefix(GROUP_DM).split(",")


class ConsolePlatform:
    """ChatPlatform for the terminal. Channel ids are `C-<name>` so they survive restarts."""

    name = "console"
    workspace_id = "console"

    def __init__(self, out: TextIO, *, exports_dir: Path = Path("exports")) -> None:
        self.out = out
        self.channels: dict[str, ConsoleChannel] = {}
        self.posts: dict[str, Posted] = {}
        self._ids = itertools.count(1)
        self.exports_dir = exports_dir
        # Message ids (m1, m2 …) restart every run; this run's token keeps captured messages apart across runs.
        self.run_id = uuid.uuid4().hex[:8]

    def _print(self, text: str) -> None:
        self.out.write(printable(text))

    # --- seeding and lookup ---------------------------------------------------------------------------------

    def know_channel(self, *, channel_id: str, name: str, members: Iterable[str] = (), archived: bool = False) -> None:
        """Remember a channel made in an earlier run (from the database)."""
        self.channels[channel_id] = ConsoleChannel(channel_id, name, members=set(members), archived=archived)

    def channel_by_name(self, name: str) -> ConsoleChannel | None:
        wanted = name.lstrip("#")
        return next((c for c in self.channels.values() if c.name == wanted), None)

    # --- ChatPlatform ---------------------------------------------------------------------------------------

    def find_channel(self, *, name: str) -> ChannelRef | None:
        channel = self.channel_by_name(name)
        if channel is None or channel.archived:
            return None
        return ChannelRef(id=channel.id, name=channel.name)

    def create_channel(self, *, name: str, topic: str, purpose: str) -> ChannelRef:
        taken = {c.name for c in self.channels.values()}
        candidate, n = name, 1
        while candidate in taken:
            n += 1
            suffix = f"-{n}"
            candidate = name[: 80 - len(suffix)] + suffix
        channel = ConsoleChannel(f"C-{candidate}", candidate, topic=topic, purpose=purpose)
        self.channels[channel.id] = channel
        self._print(f"· channel #{candidate} created\n")
        return ChannelRef(id=channel.id, name=candidate)

    def _channel(self, channel_id: str) -> ConsoleChannel:
        channel = self.channels.get(channel_id)
        if channel is None:
            raise PlatformError("That channel no longer exists.")
        return channel

    def invite(self, *, channel_id: str, user_ids: list[str]) -> None:
        channel = self._channel(channel_id)
        if channel.archived:
            raise PlatformError(f"#{channel.name} is archived.")
        added = [u for u in user_ids if u not in channel.members]
        channel.members.update(user_ids)
        for user in added:
            self._print(f"· @{user} joined #{channel.name}\n")

    def remove(self, *, channel_id: str, user_id: str) -> None:
        channel = self._channel(channel_id)
        if user_id in channel.members:
            channel.members.discard(user_id)
            self._print(f"· @{user_id} left #{channel.name}\n")

    def archive_channel(self, *, channel_id: str) -> None:
        channel = self._channel(channel_id)
        channel.archived = True
        self._print(f"· #{channel.name} archived\n")

    def post(self, *, channel_id: str, message: Message) -> str:
        channel = self._channel(channel_id)
        return self._show(where=channel.id, label=f"#{channel.name}", author="copbot", message=message)

    def send_dm(self, *, user_id: str, message: Message) -> str:
        return self._show(where=DM + user_id, label=self._label(DM + user_id), author="copbot", message=message)

    def send_group_dm(self, *, user_ids: list[str], message: Message) -> str:
        people = list(dict.fromkeys(user_ids))
        if not people:
            raise PlatformError("A group DM needs at least one person.")
        where = GROUP_DM + ",".join(people)
        return self._show(where=where, label=self._label(where), author="copbot", message=message)

    def update_message(self, *, channel_id: str, message_id: str, message: Message) -> None:
        old = self.posts.get(message_id)
        if old is None or old.where != channel_id:
            raise PlatformError("That message no longer exists.")
        self.posts[message_id] = Posted(
            id=message_id, where=old.where, author=old.author, text=message.text, buttons=message.buttons
        )
        self._print(f"[{message_id}] (edited) {self._label(channel_id)} · {old.author}: {self.render(message)}\n")

    def upload_file(self, *, user_id: str, filename: str, content: bytes, title: str) -> None:
        path = self.exports_dir / Path(filename).name  # never a path from elsewhere
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        except OSError as exc:
            raise PlatformError(f"I couldn't write the file {path}: {exc.strerror}.") from exc
        self._print(f"· file for @{user_id}: {title} → {path} ({len(content)} bytes)\n")

    # --- console helpers ------------------------------------------------------------------------------------

    def human_post(self, *, channel_id: str, author: str, text: str, thread_of: str | None = None) -> Posted:
        """A person's message in a channel or DM (the :post and :reply meta-commands)."""
        label = "DM with copbot" if channel_id.startswith(DM) else self._label(channel_id)
        posted = Posted(id=f"m{next(self._ids)}", where=channel_id, author=author, text=text)
        self.posts[posted.id] = posted
        thread = f" (reply to {thread_of})" if thread_of else ""
        self._print(f"[{posted.id}] {label}{thread} · @{author}: {text}\n")
        return posted

    def show_reply(self, *, to: str, message: Message, public_in: str | None) -> str:
        """A reply to the person who ran a command: private, or in the channel when it is public."""
        if public_in is not None and public_in in self.channels:
            return self.post(channel_id=public_in, message=message)
        return self._show(where=DM + to, label=f"only @{to}", author="copbot", message=message)

    def _label(self, where: str) -> str:
        """How the transcript names where a message is: `#channel`, `DM to @sam`, `Group DM with @sam, @priya`."""
        if where.startswith(DM):
            return f"DM to @{where.removeprefix(DM)}"
        if where.startswith(GROUP_DM):
            return "Group DM with " + ", ".join(f"@{user}" for user in group_members(where))
        return f"#{self._channel(where).name}"

    def _show(self, *, where: str, label: str, author: str, message: Message) -> str:
        posted = Posted(
            id=f"m{next(self._ids)}", where=where, author=author, text=message.text, buttons=message.buttons
        )
        self.posts[posted.id] = posted
        body = self.render(message)
        self._print(f"[{posted.id}] {label} · {author}: {body}\n")
        return posted.id

    def render(self, message: Message) -> str:
        """Plain text: the title, then the sections when there are any (else the text), mentions as @name /
        #channel, buttons numbered."""
        body = message.text if not message.sections else message.sections[0].text
        first_line = body.split("\n", 1)[0]
        parts = [f"*{message.title}*"] if message.title and message.title not in first_line else []
        if message.sections:
            for section in message.sections:
                lines = [section.text] if section.text else []
                lines += [f"{label}: {value}" for label, value in section.fields]
                parts.append("\n".join(lines))
        else:
            parts.append(message.text)
        text = "\n".join(p for p in parts if p)
        text = _USER.sub(lambda m: f"@{m.group(1)}", text)
        text = _CHANNEL.sub(lambda m: "#" + self._channel_name(m.group(1), m.group(2)), text)
        for i, button in enumerate(message.buttons, start=1):
            text += f"\n    [{i}] {button.label}  (:click {i})"
        return text.replace("\n", "\n    ")

    def _channel_name(self, channel_id: str, label: str | None = None) -> str:
        channel = self.channels.get(channel_id)
        return channel.name if channel else label or channel_id
