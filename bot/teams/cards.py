"""Neutral messages and forms rendered for Teams: markdown text activities and Adaptive Cards (schema 1.5).

Buttons become `Action.Submit` with `{"action_id", "value"}` (Teams sends them back as a message activity whose
`value` is that data). Forms become cards shown in a dialog (`task/fetch`); their submit button carries the form id
and context back in `task/submit` (or `composeExtension/submitAction` for a dialog a message action opened). A form
whose submission has problems is drawn again with what was typed and each problem under its field. A people field is
Teams' people picker (`Input.ChoiceSet` over the Graph users dataset), which submits Entra object ids; they are handed
to the core as mentions. A form can't be opened by a message, so a reply that *is* a form is sent as a
small card whose button opens the dialog; the dialog then asks the core for the form again, so nothing personal rides
in the card data. A message that invites a chat with people (`Message.chat_with`, e.g. an introduction) gets an
`Action.OpenUrl` button with Teams' deep link to a new chat with them, when their sign-in names are known.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol
from urllib.parse import quote

from handlers.ports import Button, Form, FormField, Message
from handlers.text import clip

CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
CARD_VERSION = "1.5"
CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
TEXT_LIMIT = 5000
TITLE_LIMIT = 200
MAX_ACTIONS = 6  # Teams shows at most six card actions
CHAT_LINK = "https://teams.microsoft.com/l/chat/0/0"
# Put in the person's compose box when the chat opens (they can change it before sending).
CHAT_GREETING = "Hello! copbot introduced us. When would suit you for a 20-30 minute call or a coffee?"

# Keys copbot puts in card data; everything else in a submitted dialog is an input value.
FORM_KEY = "copbot_form"
CONTEXT_KEY = "copbot_context"
DIALOG_KEY = "copbot_dialog"
PEOPLE_KEY = "copbot_people"  # the form's people pickers (space-separated names): their ids go back as mentions
RESERVED_KEYS = frozenset({FORM_KEY, CONTEXT_KEY, DIALOG_KEY, PEOPLE_KEY, "msteams", "action_id", "value"})
# Teams' people picker searches the whole organisation (Teams documents it for dialogs, which copbot's forms are).
PEOPLE_DATASET = "graph.microsoft.com/users"
# An Entra object id, the only thing Teams' people picker submits (and what copbot's Teams user ids are).
_ENTRA_ID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")

Surface = Literal["card", "text"]
"""Where Teams shows markdown: an Adaptive Card (TextBlock, fact) or a text activity (markdown and HTML)."""

_BOLD = re.compile(r"(?<![\w*])\*(?![\s*])([^*\n]+?)(?<![\s*])\*(?![\w*])")
_MENTION = re.compile(r"<(?:@(?P<user>[^<>|\s]+)(?:\|[^<>]*)?|#(?P<channel>[^<>|\s]+)(?:\|(?P<label>[^<>]*))?)>")
_HELD = re.compile(r"\x00(\d+)\x00")
_CODE = re.compile(r"`[^`\n]+`")
_BACKSLASH = re.compile(r"\\(?=[!-/:-@\[-`{-~])")  # CommonMark escapes any ASCII punctuation
_EMOJI_NAME = re.compile(r":([a-z0-9_+-]+):")
# Slack-style emoji names in the copy, as the characters Teams shows (unknown names stay as typed).
EMOJI = {
    "wave": "\N{WAVING HAND SIGN}",
    "bulb": "\N{ELECTRIC LIGHT BULB}",
    "star": "\N{WHITE MEDIUM STAR}",
    "tada": "\N{PARTY POPPER}",
    "sparkles": "\N{SPARKLES}",
    "raised_hands": "\N{PERSON RAISING BOTH HANDS IN CELEBRATION}",
    "thumbsup": "\N{THUMBS UP SIGN}",
    "+1": "\N{THUMBS UP SIGN}",
    "heart": "\N{HEAVY BLACK HEART}",
    "handshake": "\N{HANDSHAKE}",
    "speech_balloon": "\N{SPEECH BALLOON}",
}


class Names(Protocol):
    """How ids in neutral markup become names: people (`<@id>`) and channels (`<#id>`)."""

    def person(self, user_id: str) -> Person | None: ...

    def channel(self, channel_id: str) -> str | None: ...


@dataclass(frozen=True)
class Person:
    """A person as Teams can mention them: a display name and, when known, their Bot Framework id and their
    Entra sign-in name (userPrincipalName), which chat deep links use."""

    name: str
    bot_user_id: str | None = None
    upn: str | None = None


class NoNames:
    """Knows nobody: people become "someone" and channels "the channel"."""

    def person(self, user_id: str) -> Person | None:
        return None

    def channel(self, channel_id: str) -> str | None:
        return None


def _inert(text: str, *, surface: Surface) -> str:
    """Literal text made inert for Teams' markdown: what it says is shown, and it makes no link, image or HTML.

    Both surfaces: a backslash before punctuation is doubled (it would otherwise escape what follows it) and `[`,
    `]` lose their link meaning (a typed `[click](https://…)` shows as typed, never as "click" leading elsewhere).
    Adaptive Card TextBlocks and facts support no HTML (`<`, `>`, `&` show as they are), so brackets are escaped
    with backslashes, which is CommonMark. Text activities are rendered as markdown *and* HTML: there `&`, `<`, `>`
    become entities (except a line's leading `> `, a quote) and so do brackets; inside a `` `code` `` span markdown
    shows everything as typed and decodes nothing, so the span is left as it is.
    """
    text = _BACKSLASH.sub(r"\\\\", text)
    if surface == "card":
        return text.replace("[", "\\[").replace("]", "\\]")
    out: list[str] = []
    last = 0
    for span in _CODE.finditer(text):
        out.append(_inert_html(text[last : span.start()], line_start=not out or "".join(out).endswith("\n")))
        out.append(span.group())
        last = span.end()
    out.append(_inert_html(text[last:], line_start=not out or "".join(out).endswith("\n")))
    return "".join(out)


def _inert_html(text: str, *, line_start: bool) -> str:
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace("[", "&#91;").replace("]", "&#93;")

    def gt(match: re.Match[str]) -> str:
        quote = match.group(1) is not None and (match.start() > 0 or line_start)
        return "> " if quote else match.group(0).replace(">", "&gt;")

    return re.sub(r"(?m)(?:^(> ))|>", gt, text)


def markdown(
    text: str, names: Names, *, mentions: list[dict[str, Any]] | None = None, surface: Surface = "card"
) -> str:
    """Neutral markup as Teams markdown for a card (`surface="card"`) or a text activity (`"text"`).

    Literal text is made inert (`_inert`); people and channels become their names, in bold; with `mentions`, known
    people become real `<at>` mentions (text activities only). Names come from the directory, so they are made
    inert too.
    """
    held: list[re.Match[str]] = []

    def hold(match: re.Match[str]) -> str:
        held.append(match)
        return f"\x00{len(held) - 1}\x00"

    # Mentions are held out of the text (as NUL-delimited numbers: a NUL someone typed is replaced first), so the
    # escaping and the bold markup never read a name, and every name is inserted once, already safe.
    text = _MENTION.sub(hold, text.replace("\x00", "\N{REPLACEMENT CHARACTER}"))
    text = _inert(text, surface=surface)
    text = _BOLD.sub(r"**\1**", text)
    text = _EMOJI_NAME.sub(lambda m: EMOJI.get(m.group(1), m.group(0)), text)

    def bold(name: str, at: re.Match[str]) -> str:
        # Names stand out in bold, except inside bold text already (`*Meet <@U1>*`): nested `**` would break it.
        inside = at.string.count("**", 0, at.start()) % 2 == 1
        return name if inside else f"**{name}**"

    def person(user_id: str, at: re.Match[str]) -> str:
        found = names.person(user_id)
        if found is None:
            return "someone"
        name = _inert(found.name, surface=surface)
        if mentions is not None and found.bot_user_id:
            tag = f"<at>{name}</at>"
            mentions.append(
                {"type": "mention", "text": tag, "mentioned": {"id": found.bot_user_id, "name": found.name}}
            )
            return tag
        return bold(name, at)

    def channel(channel_id: str, label: str | None, at: re.Match[str]) -> str:
        name = names.channel(channel_id) or label
        return bold(_inert(name, surface=surface), at) if name else "the channel"

    def release(at: re.Match[str]) -> str:
        token = held[int(at.group(1))]
        if token.group("user"):
            return person(token.group("user"), at)
        return channel(token.group("channel"), token.group("label"), at)

    text = _HELD.sub(release, text)
    # Teams markdown joins single line breaks; a blank line between lines keeps them apart.
    return re.sub(r"\n+", "\n\n", text.strip("\n"))


def _text_block(text: str, **extra: Any) -> dict[str, Any]:
    return {"type": "TextBlock", "text": clip(text, TEXT_LIMIT), "wrap": True, **extra}


def _action(button: Button) -> dict[str, Any]:
    title = clip(button.label, 80)
    if button.url:
        return {"type": "Action.OpenUrl", "title": title, "url": button.url}
    action: dict[str, Any] = {
        "type": "Action.Submit",
        "title": title,
        "data": {"action_id": button.action_id, "value": button.value},
    }
    style = {"primary": "positive", "danger": "destructive"}.get(button.style)
    if style:
        action["style"] = style
    return action


def chat_link(upns: list[str], *, greeting: str = CHAT_GREETING, topic: str | None = None) -> str:
    """Teams' deep link to a new chat with these people (a group chat for two or more), the greeting pre-typed.

    Teams documents `users` as comma-separated Entra userPrincipalNames; the person who opens it joins the chat.
    """
    query = "users=" + ",".join(quote(upn, safe="@") for upn in upns)
    if topic and len(upns) > 1:
        query += "&topicName=" + quote(clip(topic, 100), safe="")
    return f"{CHAT_LINK}?{query}&message={quote(greeting, safe='')}"


def chat_actions(message: Message, names: Names) -> list[dict[str, Any]]:
    """The "Chat with …" buttons for the people a message invites a chat with.

    One (group) chat with everyone when all their sign-in names are known, otherwise one chat per person who can be
    linked; none when nobody can (the message still names them).
    """
    people = [names.person(user_id) for user_id in dict.fromkeys(message.chat_with)]
    linkable = [p for p in people if p is not None and p.upn]
    if not linkable:
        return []
    groups = [linkable] if len(linkable) == len(people) else [[p] for p in linkable]
    return [
        {
            "type": "Action.OpenUrl",
            "title": clip("Chat with " + " and ".join(p.name for p in group), 80),
            "url": chat_link([p.upn for p in group if p.upn], topic=message.title),
            "style": "positive",
        }
        for group in groups
    ]


def card(
    body: list[dict[str, Any]], actions: list[dict[str, Any]] | None = None, *, fallback: str = ""
) -> dict[str, Any]:
    """An Adaptive Card 1.5 with this body and these actions."""
    content: dict[str, Any] = {"type": "AdaptiveCard", "$schema": CARD_SCHEMA, "version": CARD_VERSION, "body": body}
    if actions:
        content["actions"] = actions[:MAX_ACTIONS]
    if fallback:
        content["fallbackText"] = clip(fallback, TEXT_LIMIT)
    return content


def message_card(message: Message, names: Names | None = None) -> dict[str, Any]:
    """A neutral message as an Adaptive Card, showing what Slack shows: the title, then the body. With sections, the
    sections (fields as a fact set) are the body and `text` is only the fallback; without, `text` is the body.
    Buttons become actions."""
    names = names or NoNames()
    body: list[dict[str, Any]] = []
    if message.title:
        body.append(_text_block(markdown(clip(message.title, TITLE_LIMIT), names), size="Large", weight="Bolder"))
    if not message.sections:
        body.append(_text_block(markdown(message.text, names)))
    for section in message.sections:
        if section.text:
            body.append(_text_block(markdown(section.text, names), spacing="Medium"))
        if section.fields:
            facts = [
                {"title": clip(markdown(label, names), 200), "value": clip(markdown(value, names), 2000)}
                for label, value in section.fields
            ]
            body.append({"type": "FactSet", "facts": facts})
    actions = [*chat_actions(message, names), *(_action(b) for b in message.buttons)]
    return card(body, actions, fallback=markdown(message.text, names))


def attachment(content: Mapping[str, Any]) -> dict[str, Any]:
    """An activity attachment holding an Adaptive Card."""
    return {"contentType": CARD_CONTENT_TYPE, "content": dict(content)}


def is_plain(message: Message) -> bool:
    """True when a message is just text (sent as markdown, so people can be @mentioned)."""
    return not (message.title or message.sections or message.buttons or message.chat_with)


def message_activity(message: Message, names: Names | None = None) -> dict[str, Any]:
    """The activity that shows a neutral message: markdown text with mentions, or an Adaptive Card."""
    names = names or NoNames()
    if is_plain(message):
        mentions: list[dict[str, Any]] = []
        activity: dict[str, Any] = {
            "type": "message",
            "textFormat": "markdown",
            "text": clip(markdown(message.text, names, mentions=mentions, surface="text"), 20000),
        }
        if mentions:
            activity["entities"] = mentions
        return activity
    return {"type": "message", "attachments": [attachment(message_card(message, names))]}


# --- forms -----------------------------------------------------------------------------------------------------


def _input(field: FormField, names: Names) -> dict[str, Any]:
    common: dict[str, Any] = {"id": field.name, "label": clip(field.label, 200)}
    if field.required:
        common["isRequired"] = True
        common["errorMessage"] = f"{field.label} is required."
    if field.kind in ("text", "multiline"):
        element: dict[str, Any] = {"type": "Input.Text", **common}
        if field.kind == "multiline":
            element["isMultiline"] = True
        if field.initial:
            element["value"] = field.initial
        if field.max_length:
            element["maxLength"] = field.max_length
        if field.hint:
            element["placeholder"] = clip(field.hint, 200)
        return element
    if field.kind == "users":
        return _people_picker(field, common, names)
    if field.kind == "checkbox" and not field.options:
        element = {"type": "Input.Toggle", **common, "title": clip(field.hint or field.label, 200)}
        element["value"] = "true" if field.initial.lower() in ("true", "1", "yes", "on") else "false"
        return element
    element = {
        "type": "Input.ChoiceSet",
        **common,
        "choices": [{"title": clip(label, 200), "value": value} for value, label in field.options],
    }
    if field.kind in ("multiselect", "checkbox"):
        element["isMultiSelect"] = True
    if field.kind == "checkbox":
        element["style"] = "expanded"
    if field.initial:
        element["value"] = field.initial
    if field.hint:
        element["placeholder"] = clip(field.hint, 200)
    return element


def _people_picker(field: FormField, common: dict[str, Any], names: Names) -> dict[str, Any]:
    """Teams' people picker: people chosen by searching the organisation; those already chosen (the field's ids)
    are preselected by `value`, and the ones copbot can name are also given as choices, so their names show
    without waiting for Teams' own lookup."""
    chosen = [i for i in dict.fromkeys(field.initial.replace(",", " ").split()) if _ENTRA_ID.fullmatch(i)]
    choices = []
    for user_id in chosen:
        person = names.person(user_id)
        if person is not None:
            choices.append({"title": clip(person.name, 200), "value": user_id})
    element: dict[str, Any] = {
        "type": "Input.ChoiceSet",
        **common,
        "isMultiSelect": True,
        "choices": choices,
        "choices.data": {"type": "Data.Query", "dataset": PEOPLE_DATASET},
    }
    if chosen:
        element["value"] = ",".join(chosen)
    if field.hint:
        element["placeholder"] = clip(field.hint, 200)
    return element


def _problem(text: str, names: Names) -> dict[str, Any]:
    return _text_block(markdown(text, names), color="Attention", spacing="Small")


def form_card(form: Form, errors: Mapping[str, str] | None = None, *, names: Names | None = None) -> dict[str, Any]:
    """A neutral form as an Adaptive Card for a dialog; submit carries the form id and its context back.

    With `errors` (problems by field name, from the core's validation) the card says at the top that nothing was
    saved and what to change, and shows each problem right under its field; a problem with no field of its own in
    this form is shown at the top. What was typed is in the fields' initial values already.
    """
    names = names or NoNames()
    errors = errors or {}
    own = {f.name for f in form.fields}
    body: list[dict[str, Any]] = []
    if errors:
        marked = [f.label for f in form.fields if f.name in errors]
        where = f" under {', '.join(marked)}" if marked else ""
        summary = f"Nothing has been saved yet. Please change what is marked{where}, then press {form.submit_label}."
        body.append(_text_block(_inert(summary, surface="card"), color="Attention", weight="Bolder"))
        body += [_problem(text, names) for name, text in errors.items() if name not in own]
    for f in form.fields:
        body.append(_input(f, names))
        if f.name in errors:
            body.append(_problem(errors[f.name], names))
    body += [_text_block(f.hint, isSubtle=True, size="Small") for f in form.fields if f.hint and f.kind != "text"]
    data: dict[str, Any] = {FORM_KEY: form.form_id, CONTEXT_KEY: form.context}
    people = [f.name for f in form.fields if f.kind == "users"]
    if people:
        data[PEOPLE_KEY] = " ".join(people)
    submit = {"type": "Action.Submit", "title": clip(form.submit_label, 80), "style": "positive", "data": data}
    return card(body, [submit], fallback=form.title)


def dialog_value(title: str, content: Mapping[str, Any]) -> dict[str, Any]:
    """The invoke response that shows a card in a dialog (to `task/fetch`, `task/submit` and a message action's
    `composeExtension/fetchTask` / `submitAction`)."""
    return {
        "task": {
            "type": "continue",
            "value": {"title": clip(title, 100), "width": "medium", "height": "medium", "card": attachment(content)},
        }
    }


def open_dialog_card(form: Form, source: Mapping[str, str]) -> dict[str, Any]:
    """A card with one button that opens `form` in a dialog; `source` says how to ask the core for it again."""
    button = {
        "type": "Action.Submit",
        "title": clip(f"Open: {form.title}", 80),
        "style": "positive",
        "data": {"msteams": {"type": "task/fetch"}, DIALOG_KEY: dict(source)},
    }
    return card([_text_block(f"**{clip(form.title, TITLE_LIMIT)}**")], [button], fallback=form.title)


def submitted_values(data: Mapping[str, Any]) -> dict[str, str]:
    """The input values of a submitted form card (everything that is not copbot's own data), as text.

    A people picker submits `id1,id2`; the core is given `<@id1> <@id2>`, people the platform named, which it tells
    apart from typed words: anything that is not an Entra object id stays as it came (a bare word), and the core
    takes it only if it is a known member's id, so a team's name never becomes "people".
    """
    people = set(str(data.get(PEOPLE_KEY) or "").split())
    values: dict[str, str] = {}
    for key, value in data.items():
        if key in RESERVED_KEYS:
            continue
        if isinstance(value, bool):
            values[key] = "true" if value else "false"
        elif isinstance(value, str | int | float):
            values[key] = _mentions(str(value)) if key in people else str(value)
    return values


def _mentions(ids: str) -> str:
    return " ".join(f"<@{i}>" if _ENTRA_ID.fullmatch(i) else i for i in ids.replace(",", " ").split())
