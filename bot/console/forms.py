"""A neutral form as terminal questions: choices numbered, answers read as a number, a value or a label, and the
fields a refused submission names found again so only they are asked again."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from bot.console.text import mention_people
from handlers.ports import Form, FormField, Reply

CLEAR = "-"  # the answer that empties a field (an empty answer keeps what is shown)
# A field whose answer names people (Slack's users_select, Teams' people picker); the console's `@name` is a mention.
PEOPLE_KINDS = frozenset({"users", "multi_users", "people"})
PEOPLE_FIELDS = frozenset({"recognised"})  # the story form's people, a text field until the core has a picker kind

_QUOTED = re.compile(r"`([^`\n]{1,200})`|\u201c([^\u201d\n]{1,200})\u201d")  # `code` or “typographic”
_PARTS = re.compile(r"[\s,]+")
_NEUTRAL_MENTION = re.compile(r"<@([^>|\s]+)(?:\|[^>]*)?>")


def has_choices(field: FormField) -> bool:
    """A select or multi-select with its options listed before the question."""
    return field.kind in ("select", "multiselect") and bool(field.options)


def choice_lines(field: FormField) -> list[str]:
    """The options, numbered from 1, as they are printed before the question."""
    return [f"    {i}. {label}" for i, (_value, label) in enumerate(field.options, start=1)]


def resolve(field: FormField, answer: str) -> str:
    """A choice answered by its number, value or label as the option's value; several, for a multi-select, separated
    by commas. Anything else is passed on as typed, so the core says what is wrong (a select may also take a
    community's short name, which is not an option's label)."""
    if not has_choices(field):
        return answer
    if field.kind == "select":
        return _one_choice(field, answer.strip())
    parts = [p.strip() for p in answer.split(",")]
    return ",".join(_one_choice(field, p) for p in parts if p)


def _one_choice(field: FormField, answer: str) -> str:
    if answer.isdecimal() and len(answer) <= 4 and 1 <= int(answer) <= len(field.options):
        # The number shown wins over an option whose hidden value is also a number (a community's id).
        return field.options[int(answer) - 1][0]
    folded = answer.casefold()
    for value, label in field.options:
        if folded in (value.casefold(), label.casefold()):
            return value
    return answer


def shown(field: FormField, value: str) -> str:
    """A value as the person would recognise it: a choice's label rather than its stored value, `@name` rather
    than the mention `<@name>` a pre-filled field may hold."""
    if not has_choices(field) or not value:
        return _NEUTRAL_MENTION.sub(lambda m: "@" + m.group(1), value)
    labels = dict(field.options)
    return ", ".join(labels.get(v, v) for v in value.split(",") if v)


def is_people(field: FormField) -> bool:
    """Whether the field's answer names people (so `@name` is sent as the mention `<@name>`)."""
    return str(field.kind) in PEOPLE_KINDS or field.name in PEOPLE_FIELDS


def as_submitted(field: FormField, answer: str) -> str:
    """An answer as a chat client would submit it: choices as their values, people as mentions."""
    value = resolve(field, answer)
    return mention_people(value) if is_people(field) else value


def initial_value(field: FormField) -> str:
    """The value a field starts with, as it would be submitted unchanged (people as mentions)."""
    return mention_people(field.initial) if is_people(field) else field.initial


def refused_fields(form: Form, replies: Sequence[Reply], values: Mapping[str, str]) -> list[FormField]:
    """The fields a refused submission names, in form order ([] when the replies are not a refusal naming one).

    The core answers a refused form with one private plain message (handlers.app); that message names a field by its
    label in bold (`*Time zone*`) or quotes the answer that was wrong (`` `Europe/Lodnon` isn't a time zone``,
    “fals”). The example after "For example:" is not read: it is the right form, not the wrong answer.
    """
    if len(replies) != 1:
        return []
    reply = replies[0]
    message = reply.message
    if reply.form is not None or message is None or reply.visibility != "private":
        return []
    if message.title or message.sections or message.buttons:
        return []
    text = message.text.split("\nFor example:", 1)[0]
    quoted = [(code or typographic).removesuffix("…") for code, typographic in _QUOTED.findall(text)]
    return [f for f in form.fields if f"*{f.label}*" in text or _quotes_answer(quoted, values.get(f.name, ""))]


def _quotes_answer(quoted: list[str], value: str) -> bool:
    if not value.strip():
        return False
    parts = {p for p in _PARTS.split(value) if p} | {value.strip()}
    # A quoted answer may be clipped by the core (ending "…"): its start still identifies the answer.
    return any(q in parts or (len(q) >= 10 and value.strip().startswith(q)) for q in quoted)
