"""The prompt library: load and validate prompts, themes and starters from TOML, and rotate prompts fairly."""

from __future__ import annotations

import difflib
import functools
import random
import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, TypeVar

KINDS = ("safety-ii", "reflective-cycle", "learning-from-excellence", "value-creation")
CYCLES = ("immediate", "potential", "applied", "realised", "reframing")
STAGES = ("what", "so-what", "now-what")
MAX_TEXT_CHARS = 280
ID_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")

_PROMPT_KEYS = frozenset({"id", "text", "themes", "kind", "cycle", "stage"})
_THEME_KEYS = frozenset({"id", "label", "description"})
_STARTER_KEYS = frozenset({"id", "text"})

_T = TypeVar("_T")


@dataclass(frozen=True)
class Prompt:
    """A reflective question; only value-creation prompts have a cycle, only reflective-cycle a stage."""

    id: str
    text: str
    themes: tuple[str, ...]
    kind: str
    cycle: str | None
    stage: str | None
    source: str = "library"


@dataclass(frozen=True)
class Theme:
    """A story theme from the taxonomy."""

    id: str
    label: str
    description: str


@dataclass(frozen=True)
class Starter:
    """A conversation starter for peer introductions."""

    id: str
    text: str


class LibraryError(ValueError):
    """A library file is unreadable or invalid; the message lists every problem found in it."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = tuple(problems)
        count = f"{len(self.problems)} problem" + ("" if len(self.problems) == 1 else "s")
        super().__init__(f"{source}: {count}\n" + "\n".join(f"  - {p}" for p in self.problems))


# --- reading ------------------------------------------------------------------------------------------------


def _packaged(name: str) -> Traversable:
    return resources.files("prompts").joinpath(name)


def _read_entries(path: Path | Traversable, table: str, problems: list[str]) -> list[Any]:
    """Parse ``path`` and return its ``[[table]]`` entries, appending file-level problems."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise LibraryError(str(path), [f"cannot read the file: {exc}"]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise LibraryError(str(path), [f"not valid TOML: {exc}"]) from exc
    for key in sorted(set(data) - {table}):
        problems.append(f"unknown top-level key {key!r} (expected only [[{table}]] entries)")
    entries = data.get(table, [])
    if not isinstance(entries, list):
        problems.append(f"{table!r} must be an array of tables written as [[{table}]]")
        return []
    if not entries:
        problems.append(f"no [[{table}]] entries")
    return entries


class _Entry:
    """Collects the problems of one ``[[table]]`` entry, labelled with its position and id."""

    def __init__(self, table: str, index: int, raw: dict[str, Any], allowed: frozenset[str]) -> None:
        self.raw = raw
        raw_id = raw.get("id")
        self.label = f"[[{table}]] #{index}" + (f" (id {raw_id!r})" if isinstance(raw_id, str) else "")
        self.problems: list[str] = []
        for key in sorted(set(raw) - allowed):
            self.fail(f"unknown key {key!r} (allowed: {', '.join(sorted(allowed))})")

    def fail(self, message: str) -> None:
        self.problems.append(f"{self.label}: {message}")

    def string(self, key: str, *, max_chars: int | None = None, strip: bool = True) -> str:
        value = self.raw.get(key)
        if value is None:
            self.fail(f"missing {key!r}")
            return ""
        if not isinstance(value, str):
            self.fail(f"{key!r} must be a string, not {type(value).__name__}")
            return ""
        if strip:
            value = value.strip()
        if not value.strip():
            self.fail(f"{key!r} is empty")
        elif max_chars is not None and len(value) > max_chars:
            self.fail(f"{key!r} is {len(value)} characters; the limit is {max_chars}")
        return value

    def identifier(self, seen: dict[str, str]) -> str:
        value = self.string("id", strip=False)
        if value and not ID_RE.fullmatch(value):
            self.fail(f"id {value!r} must be kebab-case: lowercase letters and digits, single hyphens")
        elif value in seen:
            self.fail(f"duplicate id {value!r} (first used by {seen[value]})")
        elif value:
            seen[value] = self.label
        return value

    def choice(self, key: str, allowed: Sequence[str]) -> str:
        value = self.string(key)
        if value and value not in allowed:
            self.fail(f"{key} {value!r} is not one of: {', '.join(allowed)}")
        return value


def _entries(path: Path | Traversable, table: str, allowed: frozenset[str]) -> tuple[list[_Entry], list[str]]:
    problems: list[str] = []
    entries: list[_Entry] = []
    for index, raw in enumerate(_read_entries(path, table, problems), start=1):
        if isinstance(raw, dict):
            entries.append(_Entry(table, index, raw, allowed))
        else:
            problems.append(f"[[{table}]] #{index}: must be a table, not {type(raw).__name__}")
    return entries, problems


# --- loaders ------------------------------------------------------------------------------------------------


def load_themes(path: Path | None = None) -> tuple[Theme, ...]:
    """Load and validate the theme taxonomy (default: the packaged ``themes.toml``)."""
    source = path if path is not None else _packaged("themes.toml")
    entries, problems = _entries(source, "theme", _THEME_KEYS)
    seen: dict[str, str] = {}
    loaded: list[Theme] = []
    for entry in entries:
        theme_id = entry.identifier(seen)
        theme = Theme(theme_id, label=entry.string("label"), description=entry.string("description"))
        problems.extend(entry.problems)
        loaded.append(theme)
    if problems:
        raise LibraryError(str(source), problems)
    return tuple(loaded)


def load_starters(path: Path | None = None) -> tuple[Starter, ...]:
    """Load and validate the peer-introduction starters (default: the packaged ``starters.toml``)."""
    source = path if path is not None else _packaged("starters.toml")
    entries, problems = _entries(source, "starter", _STARTER_KEYS)
    seen: dict[str, str] = {}
    loaded: list[Starter] = []
    for entry in entries:
        starter = Starter(id=entry.identifier(seen), text=entry.string("text", max_chars=MAX_TEXT_CHARS))
        problems.extend(entry.problems)
        loaded.append(starter)
    if problems:
        raise LibraryError(str(source), problems)
    return tuple(loaded)


def load_prompts(path: Path | None = None, *, known_themes: Iterable[Theme] | None = None) -> tuple[Prompt, ...]:
    """Load and validate reflective prompts (default: the packaged ``prompts.toml``).

    Theme ids are checked against ``known_themes``, or the packaged themes when it is not given.
    """
    source = path if path is not None else _packaged("prompts.toml")
    theme_ids = {t.id for t in (known_themes if known_themes is not None else themes())}
    entries, problems = _entries(source, "prompt", _PROMPT_KEYS)
    seen: dict[str, str] = {}
    loaded: list[Prompt] = []
    for entry in entries:
        prompt_id = entry.identifier(seen)
        text = entry.string("text", max_chars=MAX_TEXT_CHARS)
        kind = entry.choice("kind", KINDS)
        prompt_themes = _prompt_themes(entry, theme_ids)
        cycle = _conditional(entry, "cycle", CYCLES, only_for="value-creation", kind=kind)
        stage = _conditional(entry, "stage", STAGES, only_for="reflective-cycle", kind=kind)
        problems.extend(entry.problems)
        loaded.append(Prompt(prompt_id, text, prompt_themes, kind, cycle, stage))
    if problems:
        raise LibraryError(str(source), problems)
    return tuple(loaded)


def _prompt_themes(entry: _Entry, known: set[str]) -> tuple[str, ...]:
    value = entry.raw.get("themes")
    if value is None:
        entry.fail("missing 'themes' (use themes = [] for a prompt that suits any community)")
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        entry.fail("'themes' must be a list of theme ids")
        return ()
    for theme_id in sorted(set(value) - known):
        hint = difflib.get_close_matches(theme_id, sorted(known), n=1)
        entry.fail(f"unknown theme {theme_id!r}" + (f" (did you mean {hint[0]!r}?)" if hint else ""))
    for theme_id in sorted({t for t in value if value.count(t) > 1}):
        entry.fail(f"theme {theme_id!r} is listed more than once")
    return tuple(value)


def _conditional(entry: _Entry, key: str, allowed: Sequence[str], *, only_for: str, kind: str) -> str | None:
    """Read a key that a prompt of kind ``only_for`` must have and every other kind must not."""
    if kind == only_for:
        return entry.choice(key, allowed) or None
    if key in entry.raw:
        entry.fail(f"{key!r} applies only to {only_for} prompts")
    return None


# --- the shipped library ------------------------------------------------------------------------------------


@functools.cache
def themes() -> tuple[Theme, ...]:
    """Return the packaged themes, loaded once."""
    return load_themes()


@functools.cache
def prompts() -> tuple[Prompt, ...]:
    """Return the packaged prompts, loaded once."""
    return load_prompts()


@functools.cache
def starters() -> tuple[Starter, ...]:
    """Return the packaged conversation starters, loaded once."""
    return load_starters()


@functools.cache
def prompt_by_id(prompt_id: str) -> Prompt:
    """Return the packaged prompt with this id; raise KeyError naming it and any close match."""
    return _by_id({p.id: p for p in prompts()}, prompt_id, "prompt")


@functools.cache
def theme_by_id(theme_id: str) -> Theme:
    """Return the packaged theme with this id; raise KeyError naming it and any close match."""
    return _by_id({t.id: t for t in themes()}, theme_id, "theme")


def _by_id(index: dict[str, _T], wanted: str, what: str) -> _T:
    try:
        return index[wanted]
    except KeyError:
        hint = difflib.get_close_matches(wanted, sorted(index), n=1)
        suffix = f"; did you mean {hint[0]!r}?" if hint else ""
        raise KeyError(f"no {what} with id {wanted!r} in the library{suffix}") from None


# --- choosing -----------------------------------------------------------------------------------------------


def next_prompt(pool: Sequence[Prompt], used_ids: Sequence[str], *, seed: int) -> Prompt:
    """Choose the next prompt: none repeats until the whole pool is used, nor the latest one twice running.

    ``used_ids`` is the community's delivery history, oldest first; ids not in the pool are ignored. Each
    cycle through the pool follows its own shuffle, fixed by ``seed`` and the cycle's number, so the choice is
    deterministic, and prompts added to the pool mid-cycle join the current cycle.
    """
    by_id = {p.id: p for p in pool}
    if not by_id:
        raise ValueError("cannot choose a prompt from an empty pool")
    used_this_cycle: set[str] = set()
    cycle = 0
    for used in used_ids:
        if used in by_id:
            used_this_cycle.add(used)
            if len(used_this_cycle) == len(by_id):
                used_this_cycle.clear()
                cycle += 1
    order = sorted(by_id)
    random.Random(f"{seed}:{cycle}").shuffle(order)
    latest = used_ids[-1] if used_ids else None
    candidates = [pid for pid in order if pid not in used_this_cycle]
    if len(candidates) > 1 and latest in candidates:
        candidates.remove(latest)
    return by_id[candidates[0]]


def pick_starter(pool: Sequence[Starter], *, seed: int) -> Starter:
    """Choose a conversation starter, deterministically for a given seed."""
    if not pool:
        raise ValueError("cannot choose a starter from an empty pool")
    return random.Random(seed).choice(sorted(pool, key=lambda s: s.id))
