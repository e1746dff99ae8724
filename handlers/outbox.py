"""The outbox's payload format: a neutral Message as JSON, so any dispatcher can send any row later."""

from __future__ import annotations

from typing import Any

from handlers.ports import Button, Message, Section


def encode(message: Message) -> dict[str, Any]:
    """A neutral message as plain JSON data."""
    return {
        "text": message.text,
        "title": message.title,
        "sections": [{"text": s.text, "fields": [list(f) for f in s.fields]} for s in message.sections],
        "buttons": [
            {"label": b.label, "action_id": b.action_id, "value": b.value, "style": b.style, "url": b.url}
            for b in message.buttons
        ],
        "chat_with": list(message.chat_with),
    }


def decode(data: dict[str, Any]) -> Message:
    """The neutral message back from `encode`'s data."""
    return Message(
        text=str(data.get("text", "")),
        title=data.get("title"),
        sections=tuple(
            Section(text=str(s.get("text", "")), fields=tuple((str(a), str(b)) for a, b in s.get("fields", [])))
            for s in data.get("sections", [])
        ),
        buttons=tuple(
            Button(
                label=str(b["label"]),
                action_id=str(b["action_id"]),
                value=str(b.get("value", "")),
                style=b.get("style", "default"),
                url=b.get("url"),
            )
            for b in data.get("buttons", [])
        ),
        chat_with=tuple(str(u) for u in data.get("chat_with", [])),
    )
