"""Value types: every string and number a command takes from outside is checked here, once.

A read model stores what an event says. An event that holds a value its column can't take (a
NUL in a PostgreSQL ``text`` or ``jsonb`` column, an integer beyond ``bigint``, a sum of them
beyond it) would stop that read model for every tenant, and a value the event store's JSON
can't encode (a lone surrogate, an integer beyond 64 bits) would fail the write as a 500. So
each value is checked against where it ends up before it becomes an event, and a refusal names
the field (``InvalidValueError``, a 400).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from domain.base import InvalidValueError, utc

# Usage counts are summed into bigint buckets (2**63 - 1 ≈ 9.2e18) per tenant, key, model,
# instance and day. At 10**9 tokens in every record, a day bucket overflows only after 9.2e9
# records: more than ingestion at its measured 75,000 records/s for the whole day (6.5e9).
MAX_TOKENS = 10**9
MAX_LATENCY_MS = 86_400_000  # a day: no request is still answering after it
MAX_TOKENS_PER_MINUTE = 10**12  # bigint column; far above any deployment, safe to multiply
MAX_REQUESTS_PER_MINUTE = 10**9  # a key's rpm_limit: ~16.7 million requests a second
# Characters no read model can store: NUL (PostgreSQL text and jsonb refuse it) and lone UTF-16
# surrogates (not Unicode scalar values: no UTF-8 encoding, so no event JSON holds them).
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(value: str) -> bool:
    """True if every character of ``value`` can be stored in an event and a read model."""
    return UNSTORABLE.search(value) is None


def clean_text(value: str, max_length: int) -> str:
    """Text reported by the system (a provider's failure reason), made storable, not refused."""
    return UNSTORABLE.sub("\ufffd", value)[:max_length]


@dataclass(frozen=True, slots=True)
class BoundedInt:
    """An integer (never a bool or a numeric string) within the bounds of where it is stored."""

    minimum: int
    maximum: int
    message: str | None = None  # the refusal, with {field}, {minimum} and {maximum}

    def check(self, field: str, value: object) -> int:
        if type(value) is not int:  # bool is a subclass of int, and "12" is text
            raise InvalidValueError(field, f"{field} must be an integer")
        if not self.minimum <= value <= self.maximum:
            message = self.message or "{field} must be between {minimum} and {maximum}"
            raise InvalidValueError(
                field, message.format(field=field, minimum=self.minimum, maximum=self.maximum)
            )
        return value


@dataclass(frozen=True, slots=True)
class Text:
    """A string a read model can store: no NUL or lone surrogate, bounded length, and a shape.

    ``message`` words a refusal of the length or the shape (with {field}, {min} and {max}).
    With ``strip``, surrounding whitespace is removed first and doesn't count.
    """

    max_length: int
    min_length: int = 1
    pattern: re.Pattern[str] | None = None
    message: str | None = None
    strip: bool = False

    def check(self, field: str, value: object) -> str:
        if type(value) is not str:
            raise InvalidValueError(field, f"{field} must be a string")
        if not storable(value):
            raise InvalidValueError(
                field, f"{field} must not contain NUL (\\u0000) or unpaired surrogate characters"
            )
        if self.strip:
            value = value.strip()
        if not self.min_length <= len(value) <= self.max_length or (
            self.pattern is not None and not self.pattern.match(value)
        ):
            message = self.message or "{field} must be {min}-{max} characters"
            raise InvalidValueError(
                field, message.format(field=field, min=self.min_length, max=self.max_length)
            )
        return value


@dataclass(frozen=True, slots=True)
class TextList:
    """A bounded list of texts; a refused entry is named by its index (``allowed_models.0``)."""

    item: Text
    max_items: int

    def check(self, field: str, values: object) -> list[str]:
        if not isinstance(values, list | tuple):
            raise InvalidValueError(field, f"{field} must be a list of strings")
        if len(values) > self.max_items:
            raise InvalidValueError(field, f"{field} holds at most {self.max_items} entries")
        return [self.item.check(f"{field}.{i}", v) for i, v in enumerate(values)]


@dataclass(frozen=True, slots=True)
class Url:
    """An absolute URL of one of ``schemes`` that parses: a host, a valid port, no spaces."""

    max_length: int = 2048
    schemes: Sequence[str] = ("http", "https")

    def check(self, field: str, value: object) -> str:
        url = Text(self.max_length, message="{field} must be at most {max} characters").check(
            field, value
        )
        if any(c.isspace() for c in url):
            raise InvalidValueError(field, f"{field} must not contain spaces")
        refusal = f"{field} must be an absolute {' or '.join(s + '://' for s in self.schemes)} URL"
        try:
            parts = urlsplit(url)
            port = parts.port  # reading it checks it: a number in 0-65535
        except ValueError:  # "http://[::1" and the like
            raise InvalidValueError(field, refusal) from None
        if parts.scheme not in self.schemes or not parts.hostname or port == 0:
            raise InvalidValueError(field, refusal)
        return url


def check_flag(field: str, value: object) -> bool:
    """A boolean, not something truthy (a boolean column reads "yes" as true, "maybe" not)."""
    if type(value) is not bool:
        raise InvalidValueError(field, f"{field} must be true or false")
    return value


def check_instant(field: str, value: datetime) -> datetime:
    """A time as UTC; one that UTC can't represent (9999-12-31T23:59-01:00) is refused."""
    return utc(value, field)
