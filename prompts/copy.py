"""Loads copbot's longer texts (welcome, ingredients, …) from `copy.toml` by stable id."""

from __future__ import annotations

import functools
import tomllib
from importlib import resources


@functools.cache
def _texts() -> dict[str, str]:
    raw = tomllib.loads(resources.files("prompts").joinpath("copy.toml").read_text(encoding="utf-8"))
    return {key: str(entry["text"]).strip() for key, entry in raw.items()}


def text(key: str, **values: str) -> str:
    """The text with id `key`, placeholders filled from `values` (KeyError naming the id when unknown)."""
    try:
        template = _texts()[key]
    except KeyError:
        raise KeyError(f"no copy text with id {key!r} in prompts/copy.toml") from None
    return template.format(**values)


def ids() -> list[str]:
    """Every copy text id."""
    return sorted(_texts())
