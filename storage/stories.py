"""Story tables and storage functions: stories, their search index and captures."""

from __future__ import annotations
