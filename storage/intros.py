"""Introduction tables and storage functions: rounds, groups, pairing history and follow-ups."""

from __future__ import annotations
