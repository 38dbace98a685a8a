"""Times in query parameters: one parser for every route."""

from __future__ import annotations

from datetime import datetime

from fastapi import Query

from domain.base import InvalidValueError, utc
from interfaces.http.openapi import DATE_OR_TIME

AsOfQuery = Query(
    None,
    description="Replay only the events up to this ISO 8601 time: the state as it was then.",
    json_schema_extra=DATE_OR_TIME,
)


def parse_time(value: str | None, field: str) -> datetime | None:
    """A date (its midnight UTC) or an ISO 8601 time (no offset means UTC); ``None`` stays."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidValueError(
            field, f"{field} must be a date or an ISO 8601 time, e.g. 2025-10-30T00:00:00Z"
        ) from None
    return utc(parsed, field)


def time_range(
    start: str | None, end: str | None, start_field: str, end_field: str
) -> tuple[datetime | None, datetime | None]:
    """Both ends parsed; an end before the start is a bad ``end_field``."""
    lo, hi = parse_time(start, start_field), parse_time(end, end_field)
    if lo is not None and hi is not None and hi < lo:
        raise InvalidValueError(end_field, f"{end_field} must not be before {start_field}")
    return lo, hi
