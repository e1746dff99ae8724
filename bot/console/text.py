"""What the console does to a typed line before the core sees it: refuse what a terminal can't mean, and turn
`@name` into the neutral mention `<@name>` where a chat client would have made a mention."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable

# Room for any form answer (a story's text fields take 3,000) with margin; a bound on the line keeps the work on a
# pasted block small (the command grammar's quote handling is not linear on pathological input).
LINE_MAX = 10_000

# A console user id, as `:as` makes them: letters, digits, - and _, lower case (so `@Priya` is priya).
USER_ID = r"[A-Za-z0-9_\-]{1,64}"
_MENTION = re.compile(rf"(?<![\w@<])@({USER_ID})(?![\w@])")
_WORD_MENTION = re.compile(rf"@({USER_ID})")
# The grammar's quotes (handlers.grammar): mentions inside quotes are text, as they are to the core.
_QUOTES = {'"': '"', "'": "'", "\u201c": "\u201d", "\u2018": "\u2019", "\u00ab": "\u00bb"}


def line_problem(line: str, *, limit: int = LINE_MAX) -> str | None:
    """Why the console refuses this line (too long, or control characters such as NUL or Escape), or None."""
    if len(line) > limit:
        return f"that is {len(line):,} characters; the console takes up to {limit:,} in one line"
    controls = sorted({_control_name(ch) for ch in line if _is_control(ch)})
    if controls:
        return f"that line contains control characters ({', '.join(controls)}) the console doesn't accept"
    return None


def _is_control(ch: str) -> bool:
    # A tab is white space people paste; everything else in Cc (NUL, Escape, bell, DEL, C1) is not text.
    return ch != "\t" and unicodedata.category(ch) == "Cc"


def _control_name(ch: str) -> str:
    names = {"\x00": "NUL", "\x1b": "Escape", "\r": "carriage return", "\x7f": "DEL", "\x08": "backspace"}
    return names.get(ch, f"U+{ord(ch):04X}")


def _as_mention(word: str) -> str:
    m = _WORD_MENTION.fullmatch(word)
    return f"<@{m.group(1).lower()}>" if m else word


def command_mentions(text: str) -> str:
    """A `/cop` line with its `@name` words as `<@name>`, except inside quotes and in the free text after `|`.

    Words and quotes are found as the core's tokenizer (handlers.grammar) finds them: a quote opens a quoted run
    only at the start of a word or right after `=`.
    """
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "|":  # the purpose (or other free text) after the first bare `|` stays as typed
            out.append(text[i:])
            break
        if ch.isspace():
            out.append(ch)
            i += 1
            continue
        if ch in _QUOTES:
            end = _after_quote(text, i)
            out.append(text[i:end])
            i = end
            continue
        start = i
        while i < n and not text[i].isspace() and text[i] != "|":
            if text[i] in _QUOTES and i > start and text[i - 1] == "=":
                i = _after_quote(text, i)
                continue
            i += 1
        out.append(_as_mention(text[start:i]))
    return "".join(out)


def _after_quote(text: str, i: int) -> int:
    """The index just after the quoted run opening at `i` (an unclosed quote runs to the end, as in the grammar)."""
    close = _QUOTES[text[i]]
    end = text.find(close, i + 1)
    if end == -1 and close != text[i]:
        end = text.find(text[i], i + 1)
    return len(text) if end == -1 else end + 1


def message_mentions(text: str, *, known: Callable[[Iterable[str]], set[str]]) -> str:
    """A person's message as a chat client sends it: `@name` for someone `known` becomes `<@name>`; an `@` in an
    address (`a@b.nhs.uk`) or before a word that is nobody (`@home`) stays as typed."""
    names = {m.group(1).lower() for m in _MENTION.finditer(text)}
    if not names:
        return text
    people = known(names)
    return _MENTION.sub(lambda m: f"<@{m.group(1).lower()}>" if m.group(1).lower() in people else m.group(), text)
