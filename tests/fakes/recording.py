"""A recording ChatPlatform for handler tests: keeps channels and every call, can be told to fail."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from handlers.errors import PlatformError
from handlers.ports import ChannelRef, Message


@dataclass
class RecordingPlatform:
    """Implements handlers.ports.ChatPlatform in memory."""

    name: str = "test"
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    channels: dict[str, str] = field(default_factory=dict)  # id -> name
    members: dict[str, set[str]] = field(default_factory=dict)
    archived: set[str] = field(default_factory=set)
    fail: dict[str, str] = field(default_factory=dict)  # method -> message of a PlatformError to raise
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def _record(self, method: str, **kwargs: Any) -> None:
        self.calls.append((method, kwargs))
        if method in self.fail:
            raise PlatformError(self.fail[method])

    def called(self, method: str) -> list[dict[str, Any]]:
        return [kwargs for name, kwargs in self.calls if name == method]

    def create_channel(self, *, name: str, topic: str, purpose: str) -> ChannelRef:
        self._record("create_channel", name=name, topic=topic, purpose=purpose)
        final, n = name, 1
        while final in self.channels.values():
            n += 1
            final = f"{name}-{n}"
        channel_id = f"C{next(self._ids):04d}"
        self.channels[channel_id] = final
        self.members[channel_id] = set()
        return ChannelRef(id=channel_id, name=final)

    def find_channel(self, *, name: str) -> ChannelRef | None:
        self._record("find_channel", name=name)
        found = [i for i, n in self.channels.items() if n == name and i not in self.archived]
        return ChannelRef(id=found[0], name=name) if found else None

    def invite(self, *, channel_id: str, user_ids: list[str]) -> None:
        self._record("invite", channel_id=channel_id, user_ids=user_ids)
        self.members.setdefault(channel_id, set()).update(user_ids)

    def remove(self, *, channel_id: str, user_id: str) -> None:
        self._record("remove", channel_id=channel_id, user_id=user_id)
        self.members.setdefault(channel_id, set()).discard(user_id)

    def archive_channel(self, *, channel_id: str) -> None:
        self._record("archive_channel", channel_id=channel_id)
        self.archived.add(channel_id)

    def post(self, *, channel_id: str, message: Message) -> str:
        self._record("post", channel_id=channel_id, message=message)
        return f"{next(self._ids)}.000100"

    def send_dm(self, *, user_id: str, message: Message) -> str:
        self._record("send_dm", user_id=user_id, message=message)
        return f"{next(self._ids)}.000200"

    def send_group_dm(self, *, user_ids: list[str], message: Message) -> str:
        self._record("send_group_dm", user_ids=list(user_ids), message=message)
        return f"{next(self._ids)}.000300"

    def update_message(self, *, channel_id: str, message_id: str, message: Message) -> None:
        self._record("update_message", channel_id=channel_id, message_id=message_id, message=message)

    def upload_file(self, *, user_id: str, filename: str, content: bytes, title: str) -> None:
        self._record("upload_file", user_id=user_id, filename=filename, content=content, title=title)
