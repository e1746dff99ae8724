"""The command grammar (docs/architecture.md §3), parsed in one place: words, quotes, `|` purpose, key=value, mentions.

`parse` never raises: anything it cannot make sense of is reported in `ParsedCommand.problems`, which the router
turns into a short private reply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from handlers.text import clip

# Slack (and macOS, and Teams) turn straight quotes into typographic ones as people type.
_QUOTES = {'"': '"', "'": "'", "\u201c": "\u201d", "\u2018": "\u2019", "\u00ab": "\u00bb"}
_USER = re.compile(r"<@([A-Za-z0-9._\-]+)(?:\|[^>]*)?>")
_CHANNEL = re.compile(r"<#([A-Za-z0-9._:@\-]+)(?:\|([^>]*))?>")
_OPTION = re.compile(r"([A-Za-z][A-Za-z_\-]*)=(.*)", re.DOTALL)
_PREFIX = re.compile(r"^\s*/cop\b", re.IGNORECASE)


@dataclass(frozen=True)
class Token:
    """One word of a command; `quoted` words are never read as options or mentions."""

    text: str
    quoted: bool = False


@dataclass(frozen=True)
class ParsedCommand:
    """A command split into its parts. `name` is the lower-cased first word ("" when the text was empty)."""

    name: str
    args: tuple[str, ...] = ()
    options: dict[str, str] = field(default_factory=dict)
    users: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    community: str | None = None
    rest: str | None = None
    problems: tuple[str, ...] = ()

    @property
    def words(self) -> str:
        """The positional arguments joined back into one string."""
        return " ".join(self.args)


def tokenize(text: str) -> list[Token]:
    """Split on white space, keeping quoted runs (straight or typographic quotes) together."""
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if ch in _QUOTES:
            close = _QUOTES[ch]
            end = text.find(close, i + 1)
            if end == -1 and close != ch:
                end = text.find(ch, i + 1)
            if end == -1:  # an unclosed quote runs to the end, as people mean it
                tokens.append(Token(text[i + 1 :], quoted=True))
                break
            tokens.append(Token(text[i + 1 : end], quoted=True))
            i = end + 1
            continue
        start = i
        while i < n and not text[i].isspace():
            # key="quoted value" stays one token
            if text[i] in _QUOTES and i > start and text[i - 1] == "=":
                close = _QUOTES[text[i]]
                end = text.find(close, i + 1)
                if end == -1:
                    i = n
                    break
                i = end + 1
                continue
            i += 1
        tokens.append(Token(text[start:i]))
    return tokens


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] in _QUOTES and value[-1] in (_QUOTES[value[0]], value[0]):
        return value[1:-1]
    if value and value[0] in _QUOTES:
        return value[1:]
    return value


def _split_rest(text: str) -> tuple[str, str | None]:
    """Split at the first `|` outside quotes and outside <...> mentions (Slack's <#C1|name> has one)."""
    depth = 0
    quote: str | None = None
    for i, ch in enumerate(text):
        if quote is not None:
            if ch == _QUOTES.get(quote) or ch == quote:
                quote = None
            continue
        if ch in _QUOTES:
            quote = ch
        elif ch == "<":
            depth += 1
        elif ch == ">" and depth:
            depth -= 1
        elif ch == "|" and depth == 0:
            return text[:i], text[i + 1 :].strip()
    return text, None


def parse(text: str) -> ParsedCommand:
    """Parse one command line (with or without the leading `/cop`)."""
    text = _PREFIX.sub("", text.replace("\x00", ""), count=1).strip()
    head, rest = _split_rest(text)
    tokens = tokenize(head)
    if not tokens:
        return ParsedCommand(name="", rest=rest or None)
    name = tokens[0].text.lower() if not tokens[0].quoted else tokens[0].text
    args: list[str] = []
    options: dict[str, str] = {}
    users: list[str] = []
    channels: list[str] = []
    community: str | None = None
    problems: list[str] = []
    for token in tokens[1:]:
        word = token.text
        if token.quoted:
            args.append(word)
            continue
        if user := _USER.fullmatch(word):
            users.append(user.group(1))
            continue
        if channel := _CHANNEL.fullmatch(word):
            channels.append(channel.group(1))
            continue
        if word.lower().startswith("in:"):
            value = _unquote(word[3:])
            if channel := _CHANNEL.fullmatch(value):
                channels.append(channel.group(1))
            elif value.strip():
                community = value.strip()
            else:
                problems.append("`in:` needs a community after it, like `in:falls-prevention`.")
            continue
        if "=" in word:
            option = _OPTION.fullmatch(word)
            if option is None:
                problems.append(f"`{clip(word, 40)}` is not a `key=value` option.")
                continue
            key = option.group(1).lower().replace("-", "_")
            if key in options:
                problems.append(f"`{key}` is given twice.")
            options[key] = _unquote(option.group(2)).strip()
            continue
        args.append(word)
    return ParsedCommand(
        name=name,
        args=tuple(args),
        options=options,
        users=tuple(users),
        channels=tuple(channels),
        community=community,
        rest=rest if rest else None,
        problems=tuple(problems),
    )
