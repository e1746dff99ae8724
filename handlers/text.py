"""Small text helpers shared by the core and the adapters."""

from __future__ import annotations


def clip(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, the cut marked with an ellipsis (which counts as one)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
