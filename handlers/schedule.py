"""Weekly schedule arithmetic in a community's own time zone: due times, ISO-week keys and bank holidays.

Pure functions. Wall-clock times are kept across daylight-saving changes (10:00 stays 10:00 local); a local time
that does not exist on the day the clocks go forward is read with the offset from before the change (fold=0), and
one that happens twice is read as its first occurrence, so a weekly prompt is never skipped or doubled.
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Literal
from zoneinfo import ZoneInfo

import holidays as holiday_data

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
HolidayPolicy = Literal["skip", "next-working-day"]
REGIONS = {"england": "ENG", "wales": "WLS", "scotland": "SCT", "northern-ireland": "NIR"}


def parse_weekday(text: str) -> int | None:
    """0 for Monday … 6 for Sunday, from a full name or a 3+ letter prefix; None when unrecognised."""
    word = text.strip().lower()
    matches = [i for i, day in enumerate(WEEKDAYS) if len(word) >= 3 and day.startswith(word)]
    return matches[0] if len(matches) == 1 else None


def parse_hhmm(text: str) -> tuple[int, int] | None:
    """(hour, minute) from 'HH:MM' (24-hour), or None."""
    parts = text.strip().split(":")
    if len(parts) != 2 or not all(p.isdigit() for p in parts) or len(parts[1]) != 2:
        return None
    hour, minute = int(parts[0]), int(parts[1])
    return (hour, minute) if 0 <= hour < 24 and 0 <= minute < 60 else None


def local_instant(day: dt.date, hhmm: str, tz: str) -> dt.datetime:
    """The UTC instant of `hhmm` local time on `day` in `tz`."""
    hour, minute = parse_hhmm(hhmm) or (0, 0)
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=ZoneInfo(tz), fold=0).astimezone(dt.UTC)


def latest_due(now: dt.datetime, *, weekday: int, hhmm: str, tz: str) -> dt.datetime:
    """The most recent scheduled instant at or before `now` (UTC)."""
    today = now.astimezone(ZoneInfo(tz)).date()
    day = today - dt.timedelta(days=(today.weekday() - weekday) % 7)
    instant = local_instant(day, hhmm, tz)
    if instant > now:
        instant = local_instant(day - dt.timedelta(days=7), hhmm, tz)
    return instant


def next_due(now: dt.datetime, *, weekday: int, hhmm: str, tz: str) -> dt.datetime:
    """The next scheduled instant strictly after `now` (UTC)."""
    today = now.astimezone(ZoneInfo(tz)).date()
    day = today + dt.timedelta(days=(weekday - today.weekday()) % 7)
    instant = local_instant(day, hhmm, tz)
    if instant <= now:
        instant = local_instant(day + dt.timedelta(days=7), hhmm, tz)
    return instant


def week_key(instant: dt.datetime, tz: str) -> str:
    """The ISO week of the instant's local date, e.g. '2026-W48' (one prompt per community per week)."""
    year, week, _ = instant.astimezone(ZoneInfo(tz)).date().isocalendar()
    return f"{year}-W{week:02d}"


@functools.cache
def _calendar(region: str, year: int) -> holiday_data.HolidayBase:
    return holiday_data.country_holidays("GB", subdiv=REGIONS[region], years=year)


def is_bank_holiday(day: dt.date, region: str) -> bool:
    """Whether `day` is a bank holiday in that UK nation ('none' has none)."""
    return region in REGIONS and day in _calendar(region, day.year)


def holiday_adjusted(instant: dt.datetime, *, hhmm: str, tz: str, region: str, policy: str) -> dt.datetime | None:
    """The instant moved past bank holidays (`next-working-day`, skipping weekends too) or None (`skip`)."""
    day = instant.astimezone(ZoneInfo(tz)).date()
    if not is_bank_holiday(day, region):
        return instant
    if policy == "skip":
        return None
    while is_bank_holiday(day, region) or day.weekday() >= 5:
        day += dt.timedelta(days=1)
    return local_instant(day, hhmm, tz)
