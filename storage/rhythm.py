"""Rhythm tables and storage functions: prompt schedules, the outbox, deliveries and reflections."""

from __future__ import annotations
