"""Time windows: midnight-UTC dates, half-open ranges, splitting at hour boundaries."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

from domain.base import InvalidValueError

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def parse_day(value: str, field: str) -> datetime:
    """``YYYY-MM-DD`` means that day's midnight UTC (seed 001)."""
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise InvalidValueError(
            field, f"{field} must be a date YYYY-MM-DD, got {value!r}"
        ) from None
    if len(value) != 10:
        raise InvalidValueError(field, f"{field} must be a date YYYY-MM-DD, got {value!r}")
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def day_range(start: str, end: str) -> tuple[datetime, datetime]:
    """The half-open range ``[start 00:00Z, end 00:00Z)``; the same date twice is empty."""
    lo, hi = parse_day(start, "start"), parse_day(end, "end")
    if hi < lo:
        raise InvalidValueError("end", "end must not be before start")
    return lo, hi


def check_span(start: datetime, end: datetime, days: int, start_field: str, end_field: str) -> None:
    """Refuse a range of more than ``days`` days: a breakdown costs work for every day in it.

    ``0001-01-01`` to ``9999-12-31`` by day is 3.6 million days of answer for an empty tenant.
    """
    if end - start > timedelta(days=days):
        raise InvalidValueError(
            end_field, f"{end_field} must be at most {days} days after {start_field}"
        )


FIRST = datetime(1, 1, 1, tzinfo=UTC)
LAST = datetime(9999, 12, 31, tzinfo=UTC)


def shifted(t: datetime, delta: timedelta) -> datetime:
    """``t + delta``, held at the first or last representable midnight instead of overflowing."""
    try:
        return t + delta
    except OverflowError:
        return FIRST if delta < timedelta(0) else max(t, LAST)


def floor_hour(t: datetime) -> datetime:
    return t.replace(minute=0, second=0, microsecond=0)


def floor_day(t: datetime) -> datetime:
    return t.replace(hour=0, minute=0, second=0, microsecond=0)


def split_hours(start: datetime, end: datetime) -> Iterator[tuple[datetime, int]]:
    """Split ``[start, end)`` at every hour boundary: ``(hour, microseconds in that hour)``."""
    t = start
    while t < end:
        hour = floor_hour(t)
        stop = min(hour + HOUR, end)
        yield hour, (stop - t) // timedelta(microseconds=1)
        t = stop


def period_window(period: str, at: datetime) -> tuple[datetime, datetime | None]:
    """The calendar-aligned budget window containing ``at`` (midnight UTC boundaries).

    ``total`` covers all time: from the epoch, with no end.
    """
    day = floor_day(at)
    if period == "daily":
        return day, day + DAY
    if period == "weekly":
        monday = day - timedelta(days=day.weekday())
        return monday, monday + 7 * DAY
    if period == "monthly":
        first = day.replace(day=1)
        nxt = (
            first.replace(year=first.year + 1, month=1)
            if first.month == 12
            else first.replace(month=first.month + 1)
        )
        return first, nxt
    return EPOCH, None
