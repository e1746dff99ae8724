"""Neutral messages and forms rendered as Slack Block Kit (neutral markup is already Slack mrkdwn)."""

from __future__ import annotations

import json
from typing import Any

from handlers.ports import Form, FormField, Message

TEXT_LIMIT = 3000  # a section block's text limit
HEADER_LIMIT = 150


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def message_blocks(message: Message) -> list[dict[str, Any]]:
    """Block Kit for a neutral message: header, sections (with fields), then buttons."""
    blocks: list[dict[str, Any]] = []
    sections = message.sections
    if message.title and sections:
        blocks.append({"type": "header", "text": {"type": "plain_text", "text": _clip(message.title, HEADER_LIMIT)}})
    if not sections:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _clip(message.text, TEXT_LIMIT)}})
    for section in sections:
        block: dict[str, Any] = {"type": "section"}
        if section.text:
            block["text"] = {"type": "mrkdwn", "text": _clip(section.text, TEXT_LIMIT)}
        if section.fields:
            block["fields"] = [
                {"type": "mrkdwn", "text": _clip(f"*{label}*\n{value}", 2000)} for label, value in section.fields[:10]
            ]
        if "text" in block or "fields" in block:
            blocks.append(block)
    if message.buttons:
        elements = []
        for button in message.buttons[:25]:
            element: dict[str, Any] = {
                "type": "button",
                "text": {"type": "plain_text", "text": _clip(button.label, 75)},
                "action_id": button.action_id,
                "value": button.value or "-",
            }
            if button.style != "default":
                element["style"] = button.style
            if button.url:
                element["url"] = button.url
            elements.append(element)
        blocks.append({"type": "actions", "elements": elements})
    return blocks[:50]


def _input(field: FormField) -> dict[str, Any]:
    element: dict[str, Any]
    if field.kind in ("text", "multiline"):
        element = {"type": "plain_text_input", "action_id": field.name, "multiline": field.kind == "multiline"}
        if field.initial:
            element["initial_value"] = field.initial
        if field.max_length:
            element["max_length"] = field.max_length
    else:
        options = [
            {"text": {"type": "plain_text", "text": _clip(label, 75)}, "value": value}
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
        "label": {"type": "plain_text", "text": _clip(field.label, 2000)},
        "element": element,
        "optional": not field.required,
    }
    if field.hint:
        block["hint"] = {"type": "plain_text", "text": _clip(field.hint, 2000)}
    return block


def form_view(form: Form) -> dict[str, Any]:
    """A modal view for a neutral form; `callback_id` is the form id, `private_metadata` its context."""
    return {
        "type": "modal",
        "callback_id": form.form_id,
        "title": {"type": "plain_text", "text": _clip(form.title, 24)},
        "submit": {"type": "plain_text", "text": _clip(form.submit_label, 24)},
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
            else:
                values[block_id] = json.dumps(action.get("value", ""))
    return values
