"""Clocks for the composition root: the system clock, and one that can be moved forward (console, tests)."""

from __future__ import annotations

import datetime as dt
import re

from handlers.ports import Clock, SystemClock

_DURATION = re.compile(r"^\s*(\d+)\s*(m|min|mins|minutes?|h|hours?|d|days?|w|weeks?)\s*$", re.IGNORECASE)


class AdjustableClock:
    """Real time plus an offset that `advance` moves forward (never back)."""

    def __init__(self, base: Clock | None = None, *, offset: dt.timedelta = dt.timedelta(0)) -> None:
        self._base = base or SystemClock()
        self._offset = offset

    def now(self) -> dt.datetime:
        return self._base.now() + self._offset

    def advance(self, by: dt.timedelta) -> dt.datetime:
        if by < dt.timedelta(0):
            raise ValueError("the clock only moves forward")
        self._offset += by
        return self.now()


def parse_duration(text: str) -> dt.timedelta:
    """'30m', '2h', '1d', '1w' (and long forms) as a timedelta; ValueError with an example otherwise."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"{text.strip()!r} is not a duration; use a number and m, h, d or w, like 2h or 1d")
    amount, unit = int(match.group(1)), match.group(2)[0].lower()
    return {"m": dt.timedelta(minutes=amount), "h": dt.timedelta(hours=amount), "d": dt.timedelta(days=amount)}.get(
        unit, dt.timedelta(weeks=amount)
    )
