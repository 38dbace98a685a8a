"""Turning a console form's text fields into the API's request bodies.

A browser sends every field as text; the API's schemas are strict (``"12"`` is no count). These
helpers give each field the type the JSON body would have, then validate with the API's own
pydantic schema, so a value the API refuses is refused here too, with a message naming the field
(as the API's 400 does) and never repeating the value: a refused field may be a secret.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from domain.base import InvalidValueError

M = TypeVar("M", bound=BaseModel)

SEPARATORS = re.compile(r"[\s,]+")
WHOLE_NUMBER = re.compile(r"^-?[0-9]{1,18}\Z")
HAS_ZONE = re.compile(r"(Z|[+-][0-9]{2}:?[0-9]{2})\Z")


def validated(schema: type[M], data: dict[str, Any]) -> M:
    """``data`` as ``schema`` validates it; a refusal is a ``ValueError`` naming the field."""
    try:
        return schema.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "body"
        raise ValueError(f"{field}: {first['msg']}") from None


@contextmanager
def naming_the_field() -> Iterator[None]:
    """A use case's refusal of a value, named by its field as the API's 400 names it."""
    try:
        yield
    except InvalidValueError as e:
        message = str(e)
        raise ValueError(message if e.field in message else f"{e.field}: {message}") from None


def items(text: str) -> list[str]:
    """A list typed one per line (or separated by commas or spaces)."""
    return [item for item in SEPARATORS.split(text) if item]


def optional_int(text: str) -> int | str | None:
    """A whole number, nothing for an empty field, else the text (for the schema to refuse)."""
    text = text.strip()
    if not text:
        return None
    return int(text) if WHOLE_NUMBER.match(text) else text


def optional_utc_time(text: str) -> str | None:
    """A ``datetime-local`` field's value, read as UTC (the page says so); empty is none."""
    text = text.strip()
    if not text:
        return None
    return text if HAS_ZONE.search(text) else text + "Z"
