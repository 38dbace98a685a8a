"""Shared value objects and the domain error hierarchy."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from uuid import NAMESPACE_URL, UUID, uuid5

HOSTPLANE_NS = uuid5(NAMESPACE_URL, "https://hostplane.dev/ids")


@dataclass(frozen=True)
class Actor:
    """Who caused an event: ``admin`` or ``key:<uuid>``, and the client IP of the request."""

    id: str
    ip: str | None = None

    @classmethod
    def system(cls) -> Actor:
        return cls(id="system", ip=None)


class DomainError(Exception):
    """A business rule refused a command."""


class InvalidValueError(DomainError):
    """A value given to a command is not acceptable (HTTP 400)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class ConflictError(DomainError):
    """The command conflicts with the current state (HTTP 409)."""


class NameTakenError(ConflictError):
    """A unique name is already in use."""


def check_amount(
    field: str,
    value: Decimal,
    *,
    minimum: Decimal = Decimal(0),
    maximum: Decimal = Decimal(10**9),
    allow_minimum: bool = False,
) -> Decimal:
    """An EUR amount: finite, within bounds, at most 6 decimal places (micro-euros)."""
    if type(value) is not Decimal:  # a float or a bool is no amount
        raise InvalidValueError(field, f'{field} must be an amount in EUR, e.g. "12.50"')
    if (
        not value.is_finite()
        or value > maximum
        or (value < minimum if allow_minimum else value <= minimum)
    ):
        relation = ">=" if allow_minimum else ">"
        raise InvalidValueError(field, f"{field} must be an amount {relation} {minimum} EUR")
    exponent = int(value.as_tuple().exponent)  # finite: an int
    if exponent < -6:
        raise InvalidValueError(field, f"{field} has at most 6 decimal places")
    if exponent > 9:  # only a zero within bounds: 0E+1000000, which numeric can't read
        raise InvalidValueError(field, f"{field} must be written with an exponent of at most 9")
    return value


def utc(dt: datetime, field: str = "time") -> datetime:
    """Return ``dt`` as an aware UTC datetime; naive datetimes are taken to be UTC.

    A time whose UTC falls outside the years 1-9999 (``9999-12-31T23:59:59-01:00``) cannot be
    represented; it is refused as a bad ``field`` rather than left to fail as an overflow.
    """
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    try:
        return dt.astimezone(UTC)
    except (OverflowError, ValueError):
        raise InvalidValueError(
            field, f"{field} must lie between the years 1 and 9999 in UTC"
        ) from None


def sha256_hex(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def name_id(kind: str, *parts: object) -> UUID:
    """The id of an index entry for a natural key (``uuid5`` of the kind and parts)."""
    return uuid5(HOSTPLANE_NS, "/".join([kind, *(str(p) for p in parts)]))
