"""Neutral messages and forms rendered as Slack Block Kit.

The neutral markup contract (see handlers/ports.py): a `Message` holds literal text whose only markup is `<@ID>` /
`<@ID|label>` (a person), `<#ID>` / `<#ID|name>` (a channel), `*bold*`, `_italic_`, `` `code` `` and lines starting
with `> ` (a quote). Every other `<`, `>` and `&` is literal, whoever typed it: `mrkdwn()` is the one function that
turns neutral text into Slack mrkdwn, escaping them as Slack asks (`&amp;`, `&lt;`, `&gt;`) so that `<!channel>`,
`<!here>`, `<!subteam^…>` and `<https://…|links>` in a community name, a story or a profile are shown, never acted
on. It is used for every mrkdwn text object (sections, fields) and for the top-level `text` of every message,
ephemeral, `respond()` body and App Home view; mrkdwn objects are also `verbatim`, so Slack does not turn a typed
`@channel`, channel name or URL into a mention or link either. plain_text objects (headers, button labels, modal
titles, labels, hints and options) are not parsed by Slack and take the text as it is.

What a person sees: its title (as a header), then its body. A message **with sections** has the sections as its
whole body; its `text` is then only the notification and fallback, which Slack does not show once blocks exist. A
message **without sections** has its `text` as the body (split over as many section blocks as its length needs, so
nothing is cut). The Teams card and the console printer follow the same rule.
"""

from __future__ import annotations

import json
import re
from typing import Any

from handlers.ports import Form, FormField, Message, Section
from handlers.text import clip

TEXT_LIMIT = 3000  # a section block's text limit
FIELD_LIMIT = 2000  # a section field's text limit
FIELDS_PER_SECTION = 10
HEADER_LIMIT = 150
FALLBACK_LIMIT = 4000  # Slack truncates a message's top-level text beyond this
MAX_BLOCKS = 50
PLACEHOLDER_LIMIT = 150  # a select menu's placeholder

# The neutral tokens that stay Slack markup: people and channels by their Slack ids (uppercase letters and digits,
# so `<@user>` in copy or `<@!channel>` typed by someone stays text), with an optional label free of `<`, `>`.
_MENTION = re.compile(r"<(?:@[UWB][A-Z0-9]+|#[CGD][A-Z0-9]+)(?:\|[^<>\n]*)?>")
_QUOTE = re.compile(r"^> ", re.MULTILINE)
_USER_ID = re.compile(r"[UW][A-Z0-9]+")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def mrkdwn(text: str) -> str:
    """Neutral text as Slack mrkdwn: `&`, `<`, `>` escaped except in person/channel mentions and a line's `> `."""
    out: list[str] = []
    last = 0
    for match in _MENTION.finditer(text):
        out.append(_escape(text[last : match.start()]))
        token = match.group()
        head, bar, label = token[1:-1].partition("|")
        out.append(f"<{head}|{label.replace('&', '&amp;')}>" if bar else token)
        last = match.end()
    out.append(_escape(text[last:]))
    # A quote marker stays Slack's blockquote; any other `>` is text.
    return re.sub(r"^&gt; ", "> ", "".join(out), flags=re.MULTILINE)


def _fit(text: str, limit: int) -> str:
    """Neutral text clipped so that its mrkdwn fits `limit` (escaping lengthens it), never inside an escape."""
    rendered = mrkdwn(text)
    while len(rendered) > limit:
        text = text[: max(0, len(text) - (len(rendered) - limit) - 1)]
        rendered = mrkdwn(text + "…")
    return rendered


def _chunks(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """Neutral text as mrkdwn pieces of at most `limit` characters, split between lines, so nothing is lost."""
    pieces: list[str] = []
    current: list[str] = []
    size = 0
    for line in text.split("\n"):
        rendered = _fit(line, limit)
        if current and size + 1 + len(rendered) > limit:
            pieces.append("\n".join(current))
            current, size = [], 0
        size += len(rendered) + (1 if current else 0)
        current.append(rendered)
    if current and any(current):
        pieces.append("\n".join(current))
    return pieces


def _mrkdwn_object(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def _plain(text: str, limit: int) -> dict[str, Any]:
    return {"type": "plain_text", "text": clip(text, limit)}


def _section_blocks(section: Section) -> list[dict[str, Any]]:
    texts = _chunks(section.text) if section.text else []
    fields = [
        _mrkdwn_object(_fit(f"*{label}*\n{value}" if label else value, FIELD_LIMIT)) for label, value in section.fields
    ]
    blocks: list[dict[str, Any]] = [{"type": "section", "text": _mrkdwn_object(t)} for t in texts]
    for start in range(0, len(fields), FIELDS_PER_SECTION):
        group = fields[start : start + FIELDS_PER_SECTION]
        if blocks and start == 0 and "fields" not in blocks[-1]:
            blocks[-1]["fields"] = group  # the fields sit under the section's (last) text, as one block
        else:
            blocks.append({"type": "section", "fields": group})
    return blocks


def message_blocks(message: Message) -> list[dict[str, Any]]:
    """Block Kit for a neutral message: a header (its title), the sections (or, without any, its text), buttons."""
    blocks: list[dict[str, Any]] = []
    if message.title:
        blocks.append({"type": "header", "text": _plain(message.title, HEADER_LIMIT)})
    if message.sections:
        for section in message.sections:
            blocks += _section_blocks(section)
    else:
        blocks += [{"type": "section", "text": _mrkdwn_object(t)} for t in _chunks(message.text)]
    if message.buttons:
        elements = []
        for button in message.buttons[:25]:
            element: dict[str, Any] = {
                "type": "button",
                "text": _plain(button.label, 75),
                "action_id": button.action_id,
                "value": button.value or "-",
            }
            if button.style != "default":
                element["style"] = button.style
            if button.url:
                element["url"] = button.url
            elements.append(element)
        blocks.append({"type": "actions", "elements": elements})
    return blocks[:MAX_BLOCKS]


def fallback_text(message: Message) -> str:
    """The message's top-level `text` (notification and fallback), escaped like every mrkdwn text."""
    return _fit(message.text, FALLBACK_LIMIT) or " "


def message_payload(message: Message) -> dict[str, Any]:
    """The `text` and `blocks` arguments for chat.postMessage, chat.postEphemeral, chat.update or respond()."""
    return {"text": fallback_text(message), "blocks": message_blocks(message)}


def home_view(message: Message) -> dict[str, Any]:
    """The App Home tab (views.publish) showing a neutral message."""
    return {"type": "home", "blocks": message_blocks(message)}


def _people_picker(field: FormField) -> dict[str, Any]:
    """A `users` field as Slack's people picker (`multi_users_select`), its hint as the placeholder.

    Slack refuses a whole modal whose `initial_users` holds anything but a user id, so only well-formed ids are
    pre-selected: a stray word in `initial` costs one pre-selection, never the form."""
    element: dict[str, Any] = {"type": "multi_users_select", "action_id": field.name}
    chosen = [u for u in dict.fromkeys(field.initial.replace(",", " ").split()) if _USER_ID.fullmatch(u)]
    if chosen:
        element["initial_users"] = chosen
    if field.hint:
        element["placeholder"] = _plain(field.hint, PLACEHOLDER_LIMIT)
    return element


def _input(field: FormField) -> dict[str, Any]:
    element: dict[str, Any]
    if field.kind == "users":
        element = _people_picker(field)
    elif field.kind in ("text", "multiline"):
        element = {"type": "plain_text_input", "action_id": field.name, "multiline": field.kind == "multiline"}
        if field.initial:
            element["initial_value"] = field.initial
        if field.max_length:
            element["max_length"] = field.max_length
    else:
        options = [
            {"text": {"type": "plain_text", "text": clip(label, 75)}, "value": value}
            for value, label in field.options[:100]
        ]
        kind = {"select": "static_select", "multiselect": "multi_static_select", "checkbox": "checkboxes"}[field.kind]
        element = {"type": kind, "action_id": field.name, "options": options}
        chosen = [o for o in options if o["value"] in field.initial.split(",")]
        if chosen and field.kind == "select":
            element["initial_option"] = chosen[0]
        elif chosen:
            element["initial_options"] = chosen
    block: dict[str, Any] = {
        "type": "input",
        "block_id": field.name,
        "label": {"type": "plain_text", "text": clip(field.label, 2000)},
        "element": element,
        "optional": not field.required,
    }
    if field.hint and field.kind != "users":  # a picker shows its hint as the placeholder, not twice
        block["hint"] = {"type": "plain_text", "text": clip(field.hint, 2000)}
    return block


def form_view(form: Form) -> dict[str, Any]:
    """A modal view for a neutral form; `callback_id` is the form id, `private_metadata` its context."""
    return {
        "type": "modal",
        "callback_id": form.form_id,
        "title": {"type": "plain_text", "text": clip(form.title, 24)},
        "submit": {"type": "plain_text", "text": clip(form.submit_label, 24)},
        "close": {"type": "plain_text", "text": "Cancel"},
        "private_metadata": form.context,
        "blocks": [_input(f) for f in form.fields],
    }


def view_values(state: dict[str, Any]) -> dict[str, str]:
    """The submitted values of a modal (`view.state.values`) as field name -> text."""
    values: dict[str, str] = {}
    for block_id, actions in state.get("values", {}).items():
        for action in actions.values():
            kind = action.get("type")
            if kind == "plain_text_input":
                values[block_id] = action.get("value") or ""
            elif kind == "static_select":
                selected = action.get("selected_option") or {}
                values[block_id] = selected.get("value", "")
            elif kind in ("multi_static_select", "checkboxes"):
                values[block_id] = ",".join(o.get("value", "") for o in action.get("selected_options") or [])
            elif kind == "multi_users_select":
                # As mentions: the people Slack's picker chose, which the core tells apart from words typed.
                values[block_id] = " ".join(f"<@{u}>" for u in action.get("selected_users") or [])
            else:
                values[block_id] = json.dumps(action.get("value", ""))
    return values
