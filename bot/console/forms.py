"""A neutral form as terminal questions: choices numbered, answers read as a number, a value or a label, people
read from `@name` as a picker submits them (their ids), and the fields a refused submission names found again so only
they are asked again."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from bot.console.text import USER_ID
from handlers.ports import Form, FormField, Reply

CLEAR = "-"  # the answer that empties a field (an empty answer keeps what is shown)
PEOPLE_HOW = "mention people as @name, separated by spaces"

_QUOTED = re.compile(r"`([^`\n]{1,200})`|\u201c([^\u201d\n]{1,200})\u201d")  # `code` or “typographic”
_PARTS = re.compile(r"[\s,]+")
_NEUTRAL_MENTION = re.compile(r"<@([^>|\s]+)(?:\|[^>]*)?>")
_CONSOLE_ID = re.compile(rf"@?({USER_ID})")  # a person's console id, with or without its `@`
_BETWEEN_NAMES = frozenset({"and", "&"})  # "@alice and @bob" names two people, not three


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
    """A value as the person would recognise it: a choice's label rather than its stored value, people as `@name`
    rather than their ids, `@name` rather than the mention `<@name>` a pre-filled text field may hold."""
    if field.kind == "users":
        return " ".join(f"@{user_id}" for user_id in _PARTS.split(value) if user_id)
    if not has_choices(field) or not value:
        return _NEUTRAL_MENTION.sub(lambda m: "@" + m.group(1), value)
    labels = dict(field.options)
    return ", ".join(labels.get(v, v) for v in value.split(",") if v)


def as_submitted(field: FormField, answer: str) -> str:
    """An answer as a chat client would submit it: choices as their values, people as their ids."""
    return people_ids(answer) if field.kind == "users" else resolve(field, answer)


def people_ids(answer: str) -> str:
    """The people an answer names, as a people picker submits them: their platform ids, separated by spaces.

    A console id is the name `:as` gave the person, so `@Sam`, `sam` and the mention `<@sam>` are all `sam`. Whether
    an id is someone copbot knows is the core's to say (its validation names the field, which alone is asked again),
    so a word that can't be an id is passed on as typed, for the core to quote back.
    """
    ids: list[str] = []
    for word in _PARTS.split(answer):
        if not word or word.casefold() in _BETWEEN_NAMES:
            continue
        mention = _NEUTRAL_MENTION.fullmatch(word)
        name = _CONSOLE_ID.fullmatch(word)
        ids.append(mention.group(1) if mention else name.group(1).lower() if name else word)
    return " ".join(ids)


def initial_value(field: FormField) -> str:
    """The value a field starts with, as it would be submitted unchanged (people as ids separated by spaces)."""
    if field.kind == "users":  # already ids, never names: only the separators are made one
        return " ".join(user_id for user_id in _PARTS.split(field.initial) if user_id)
    return field.initial


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
