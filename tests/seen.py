"""What a person sees: payloads copbot hands to Slack, Teams and the console, rendered as the plain text shown.

Tests assert on these rather than on the data handed to the platform, so content a platform does not show (Slack's
top-level `text` once `blocks` exist, a card's fallback) or markup it acts on (`<!channel>`, a link behind a word)
is caught. Each helper models its platform's documented rules, not copbot's renderer:

- Slack (`slack_seen`, `slack_pings`): the blocks when there are any, else `text`; in mrkdwn, `<…>` tokens are
  mentions, special mentions and links, `&amp;` `&lt;` `&gt;` are decoded, `*bold*` `_italic_` `~strike~` `` `code` ``
  lose their markers; plain_text is shown exactly as it is.
- Teams (`teams_seen`, `teams_links`): a text activity's markdown (and HTML, which Teams also renders), or an
  Adaptive Card's visible text (TextBlock, FactSet, RichTextBlock, inputs, action titles) through containers.
- Console (`console_seen`): the printed lines, refusing raw control characters.
"""

from __future__ import annotations

import html
import io
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from bot.console.platform import ConsolePlatform
from bot.slack.render import message_payload
from bot.teams.cards import Names, message_activity
from handlers.ports import Message

# --- Slack -----------------------------------------------------------------------------------------------------

_SLACK_TOKEN = re.compile(r"<([^<>]*)>")
_SLACK_STYLES = [
    re.compile(r"(?<![\w*])\*(?=\S)([^*\n]*?\S)\*(?![\w*])"),
    re.compile(r"(?<![\w_])_(?=\S)([^_\n]*?\S)_(?![\w_])"),
    re.compile(r"(?<![\w~])~(?=\S)([^~\n]*?\S)~(?![\w~])"),
]
_SLACK_CODE = re.compile(r"```\n?(.*?)\n?```|`([^`\n]+)`", re.DOTALL)
_BARE_SPECIAL = re.compile(r"(?<![\w@])@(channel|here|everyone)\b")
_SPECIAL = {"channel", "here", "everyone", "group"}


def _as_object(value: Any) -> Any:
    """Slack parameters arrive as JSON strings when sent form-encoded."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _slack_token(body: str, names: Mapping[str, str]) -> tuple[str, str | None]:
    """What Slack shows for one `<…>` token, and what it acts on (a special mention or a link), if anything."""
    head, _, label = body.partition("|")
    label = label.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    if head.startswith("@"):
        user = head[1:]
        return "@" + names.get(user, label or user), None
    if head.startswith("#"):
        channel = head[1:]
        return "#" + names.get(channel, label or channel), None
    if head.startswith("!subteam^"):
        group = head.removeprefix("!subteam^")
        return (label if label.startswith("@") else "@" + (label or group)), f"subteam^{group}"
    if head.startswith("!date^"):
        return label, None
    if head.startswith("!"):
        special = head[1:]
        return ("@" + special, special if special in _SPECIAL else None) if special else (body, None)
    # Anything else between < and > is a link to it (Slack links `<fakelink.toUrl.com|PR Strategy>` as readily).
    return label or head, head


def _mrkdwn_seen(text: str, names: Mapping[str, str]) -> str:
    held: list[str] = []

    def hold(match: re.Match[str]) -> str:
        shown, _ = _slack_token(match.group(1), names)
        held.append(shown)
        return f"\x00{len(held) - 1}\x00"

    text = _SLACK_TOKEN.sub(hold, text)
    text = _SLACK_CODE.sub(lambda m: m.group(1) if m.group(1) is not None else m.group(2), text)
    for style in _SLACK_STYLES:
        text = style.sub(r"\1", text)
    text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")  # only these three, as Slack
    return re.sub(r"\x00(\d+)\x00", lambda m: held[int(m.group(1))], text)


def _text_object(obj: Any, names: Mapping[str, str]) -> str:
    if not isinstance(obj, Mapping):
        return ""
    text = str(obj.get("text") or "")
    return _mrkdwn_seen(text, names) if obj.get("type") == "mrkdwn" else text


def _rich_text(element: Mapping[str, Any], names: Mapping[str, str]) -> str:
    kind = element.get("type")
    if kind == "text":
        return str(element.get("text", ""))
    if kind == "user":
        user = str(element.get("user_id", ""))
        return "@" + names.get(user, user)
    if kind == "channel":
        channel = str(element.get("channel_id", ""))
        return "#" + names.get(channel, channel)
    if kind == "broadcast":
        return "@" + str(element.get("range", ""))
    if kind == "usergroup":
        return "@" + str(element.get("usergroup_id", ""))
    if kind == "link":
        return str(element.get("text") or element.get("url", ""))
    if kind == "emoji":
        return f":{element.get('name', '')}:"
    parts = [_rich_text(e, names) for e in element.get("elements", []) if isinstance(e, Mapping)]
    joiner = "\n" if kind in ("rich_text_list", "rich_text") else ""
    return joiner.join(parts)


def _element_seen(element: Mapping[str, Any], names: Mapping[str, str]) -> list[str]:
    """An interactive element or a context element as shown: its label, placeholder, value or options."""
    kind = element.get("type")
    if kind in ("mrkdwn", "plain_text"):
        return [_text_object(element, names)]
    if kind == "image":
        return []
    shown = [_text_object(element.get(key), names) for key in ("text", "placeholder")]
    if element.get("initial_value"):
        shown.append(str(element["initial_value"]))
    for option in element.get("options", []) or []:
        if isinstance(option, Mapping):
            shown.append(_text_object(option.get("text"), names))
    return [s for s in shown if s]


def _blocks_seen(blocks: Iterable[Any], names: Mapping[str, str]) -> Iterator[str]:
    for block in blocks:
        if not isinstance(block, Mapping):
            continue
        kind = block.get("type")
        if kind in ("header", "section"):
            if block.get("text"):
                yield _text_object(block["text"], names)
            for field in block.get("fields", []) or []:
                yield _text_object(field, names)
            if isinstance(block.get("accessory"), Mapping):
                yield from _element_seen(block["accessory"], names)
        elif kind in ("context", "actions"):
            for element in block.get("elements", []) or []:
                if isinstance(element, Mapping):
                    yield from _element_seen(element, names)
        elif kind == "input":
            yield _text_object(block.get("label"), names)
            if isinstance(block.get("element"), Mapping):
                yield from _element_seen(block["element"], names)
            if block.get("hint"):
                yield _text_object(block["hint"], names)
        elif kind == "rich_text":
            yield _rich_text(block, names)
        elif kind == "image" and block.get("title"):
            yield _text_object(block["title"], names)


def _surface(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    """The message or view inside a call's parameters (views.* send the view under `view`)."""
    view = _as_object(payload.get("view"))
    return view if isinstance(view, Mapping) else payload


def slack_seen(payload: Mapping[str, Any], *, names: Mapping[str, str] | None = None) -> str:
    """What Slack shows for a chat.postMessage / chat.postEphemeral / chat.update call, a respond() body or a view.

    The blocks when there are any (Slack then shows `text` only in notifications), else `text`; a modal's title
    first. `names` maps user and channel ids to the names Slack would show (default: the id).
    """
    names = names or {}
    surface = _surface(payload)
    blocks = _as_object(surface.get("blocks"))
    lines: list[str] = []
    if isinstance(surface.get("title"), Mapping):
        lines.append(_text_object(surface["title"], names))
    if isinstance(blocks, list) and blocks:
        lines += _blocks_seen(blocks, names)
    elif surface.get("text") is not None:
        lines.append(_mrkdwn_seen(str(surface["text"]), names))
    return "\n".join(line for line in lines if line)


def _mrkdwn_acts(text: str, *, verbatim: bool) -> set[str]:
    acts = {act for m in _SLACK_TOKEN.finditer(text) if (act := _slack_token(m.group(1), {})[1])}
    if not verbatim:  # Slack's automatic parsing turns a typed @channel into the real thing
        acts |= {m.group(1) for m in _BARE_SPECIAL.finditer(text.replace("&lt;", "<").replace("&gt;", ">"))}
    return acts


def _text_objects(value: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(value, Mapping):
        if value.get("type") in ("mrkdwn", "plain_text") and "text" in value:
            yield value
        for inner in value.values():
            yield from _text_objects(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _text_objects(inner)


def _rich_acts(value: Any) -> Iterator[str]:
    if isinstance(value, Mapping):
        if value.get("type") == "broadcast":
            yield str(value.get("range"))
        elif value.get("type") == "usergroup":
            yield f"subteam^{value.get('usergroup_id')}"
        elif value.get("type") == "link" and value.get("url"):
            yield str(value["url"])
        for inner in value.values():
            yield from _rich_acts(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _rich_acts(inner)


def slack_pings(payload: Mapping[str, Any]) -> set[str]:
    """What Slack would act on in a payload, beyond showing text: special mentions (`channel`, `here`, `everyone`,
    `subteam^ID`) and links (their URLs), in any mrkdwn object, rich text or the top-level `text`.

    A typed `@channel` counts in a mrkdwn object that is not `verbatim` (Slack's automatic parsing), and in the
    top-level `text` when `link_names` or `parse=full` asks for it. plain_text objects are never parsed.
    """
    surface = _surface(payload)
    blocks = _as_object(surface.get("blocks"))
    acts: set[str] = set()
    for obj in _text_objects(blocks):
        if obj.get("type") == "mrkdwn":
            acts |= _mrkdwn_acts(str(obj["text"]), verbatim=bool(obj.get("verbatim")))
    acts |= set(_rich_acts(blocks))
    if surface.get("text") is not None:
        parse_names = str(surface.get("link_names", "")).lower() in ("1", "true") or surface.get("parse") == "full"
        acts |= _mrkdwn_acts(str(surface["text"]), verbatim=not parse_names)
    return acts


def seen_slack(message: Message, names: Mapping[str, str] | None = None) -> str:
    """A neutral message rendered by copbot's Slack renderer, as Slack shows it."""
    return slack_seen(message_payload(message), names=names)


# --- Teams -----------------------------------------------------------------------------------------------------

_MD_LINK = re.compile(r"(!?)(?<!\\)\[((?:\\.|[^\]\\])*)(?<!\\)\]\(([^()\s]+)(?:\s+\"[^\"]*\")?\)")
_MD_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")
_MD_STYLES = [
    re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*"),
    re.compile(r"__(?=\S)(.+?)(?<=\S)__"),
    re.compile(r"(?<![\w*\\])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])"),
    re.compile(r"(?<![\w_\\])_(?=\S)([^_\n]+?)(?<=\S)_(?![\w_])"),
]
_MD_CODE = re.compile(r"`([^`\n]+)`")
_HTML_LINK = re.compile(r"<a\s[^>]*href\s*=\s*[\"']?([^\"'\s>]+)[^>]*>(.*?)</a\s*>", re.IGNORECASE | re.DOTALL)
_HTML_TAG = re.compile(r"</?[A-Za-z][^<>]*>")
_AT = re.compile(r"<at(?:\s[^>]*)?>(.*?)</at>", re.DOTALL)


def _markdown_seen(text: str, *, html_too: bool, mentions: Iterable[str] = ()) -> str:
    """Teams markdown as shown: markers dropped, links as their text, backslash escapes (and, in text activities,
    HTML tags and entities) resolved; code spans shown as typed. In a card, HTML is not rendered: only an `<at>`
    tag that the card's `msteams.entities` declares (`mentions`) becomes the name it tags."""
    held: list[str] = []

    def hold(shown: str) -> str:
        held.append(shown)
        return f"\x00{len(held) - 1}\x00"

    if html_too:  # text activities have code spans; Adaptive Cards don't (backticks are shown as typed)
        text = _MD_CODE.sub(lambda m: hold(m.group(1)), text)
    declared = set(mentions)

    def at(match: re.Match[str]) -> str:
        if html_too:
            return hold(html.unescape(match.group(1)))
        return hold(match.group(1)) if match.group() in declared else match.group()

    text = _AT.sub(at, text)
    text = _MD_LINK.sub(lambda m: m.group(2), text)
    for style in _MD_STYLES:
        text = style.sub(r"\1", text)
    text = _MD_ESCAPE.sub(r"\1", text)
    if html_too:
        text = _HTML_LINK.sub(lambda m: m.group(2), text)
        text = re.sub(r"<br\s*/?>", "\n", text, flags=re.IGNORECASE)
        text = _HTML_TAG.sub("", text)
        text = html.unescape(text)
    text = re.sub(r"\x00(\d+)\x00", lambda m: held[int(m.group(1))], text)
    return "\n".join(line.rstrip() for line in text.split("\n") if line.strip())


def _markdown_links(text: str, *, html_too: bool) -> set[str]:
    if html_too:
        text = _MD_CODE.sub("", text)
    found = {m.group(3) for m in _MD_LINK.finditer(text)}
    if html_too:
        found |= {m.group(1) for m in _HTML_LINK.finditer(text)}
        found |= set(re.findall(r"<img\s[^>]*src\s*=\s*[\"']?([^\"'\s>]+)", text, flags=re.IGNORECASE))
    return found


def _card_of(value: Mapping[str, Any]) -> Mapping[str, Any] | None:
    if value.get("type") == "AdaptiveCard":
        return value
    content = value.get("content")
    if isinstance(content, Mapping) and content.get("type") == "AdaptiveCard":
        return content
    return None


def _card_items(card: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(kind, text) for everything visible in a card, depth first: `md` texts are markdown, `plain` are not."""

    def walk(item: Any) -> Iterator[tuple[str, str]]:
        if isinstance(item, list):
            for inner in item:
                yield from walk(inner)
            return
        if not isinstance(item, Mapping):
            return
        kind = item.get("type", "")
        if kind == "TextBlock":
            yield "md", str(item.get("text", ""))
        elif kind == "FactSet":
            for fact in item.get("facts", []):
                yield "md", f"{fact.get('title', '')}: {fact.get('value', '')}"
        elif kind == "RichTextBlock":
            runs = item.get("inlines", [])
            yield "plain", "".join(r if isinstance(r, str) else str(r.get("text", "")) for r in runs)
        elif kind.startswith("Input."):
            for key in ("label", "title", "placeholder", "value"):
                if item.get(key):
                    yield "plain", str(item[key])
            for choice in item.get("choices", []):
                yield "plain", str(choice.get("title", ""))
        elif kind.startswith("Action."):
            if item.get("title"):
                yield "plain", str(item["title"])
            if isinstance(item.get("card"), Mapping):  # Action.ShowCard
                yield from walk(item["card"].get("body", []))
                yield from walk(item["card"].get("actions", []))
            return
        for key in ("body", "items", "columns", "actions", "cards"):
            if key in item:
                yield from walk(item[key])

    yield from walk(card.get("body", []))
    yield from walk(card.get("actions", []))


def _cards(activity: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    card = _card_of(activity)
    if card is not None:
        return [card]
    return [c for a in activity.get("attachments", []) or [] if isinstance(a, Mapping) and (c := _card_of(a))]


def teams_seen(activity_or_card: Mapping[str, Any]) -> str:
    """What Teams shows for an activity (its markdown text, then its cards), an attachment or an Adaptive Card."""
    lines: list[str] = []
    text = activity_or_card.get("text")
    if activity_or_card.get("type") == "message" and text:
        if activity_or_card.get("textFormat") == "plain":  # shown as it is, mentions as the names they tag
            lines.append(_AT.sub(lambda m: m.group(1), str(text)).strip())
        else:
            lines.append(_markdown_seen(str(text), html_too=True))
    for card in _cards(activity_or_card):
        msteams = card.get("msteams")
        msteams = msteams if isinstance(msteams, Mapping) else {}
        declared = [str(e.get("text", "")) for e in msteams.get("entities", []) if isinstance(e, Mapping)]
        for kind, shown in _card_items(card):
            lines.append(_markdown_seen(shown, html_too=False, mentions=declared) if kind == "md" else shown)
    return "\n".join(line.rstrip() for line in lines if line.strip())


def teams_links(activity_or_card: Mapping[str, Any]) -> set[str]:
    """The URLs a person could follow behind other words (markdown and HTML links, images) in what Teams shows;
    `Action.OpenUrl` buttons, whose title is their own, are not counted."""
    found: set[str] = set()
    text = activity_or_card.get("text")
    if activity_or_card.get("type") == "message" and text and activity_or_card.get("textFormat") != "plain":
        found |= _markdown_links(str(text), html_too=True)
    for card in _cards(activity_or_card):
        for kind, shown in _card_items(card):
            if kind == "md":
                found |= _markdown_links(shown, html_too=False)
    return found


def seen_teams(message: Message, names: Names | None = None) -> str:
    """A neutral message rendered by copbot's Teams renderer, as Teams shows it."""
    return teams_seen(message_activity(message, names))


# --- console ---------------------------------------------------------------------------------------------------

_RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def console_seen(output: str) -> str:
    """The console's output as read: each line without its indent and trailing spaces, blank lines dropped.

    Raises AssertionError when the output holds a raw control character (an ANSI escape, a carriage return, NUL,
    a bidirectional override): the terminal would act on it rather than show it.
    """
    raw = _RAW_CONTROL.search(output)
    if raw:
        raise AssertionError(f"raw control character U+{ord(raw.group()):04X} reached the terminal")
    lines = [line.strip() for line in output.splitlines()]
    return "\n".join(line for line in lines if line)


def seen_console(message: Message) -> str:
    """A neutral message as copbot's console prints it (a DM), without the line's `[m1] DM to @you · copbot: `."""
    out = io.StringIO()
    ConsolePlatform(out).send_dm(user_id="you", message=message)
    return console_seen(out.getvalue().removeprefix("[m1] DM to @you · copbot: "))
