"""Text in requests: what is not storable text is refused where it is read, naming the field.

A JSON string may spell a UTF-16 surrogate alone (``"\\ud800"``). Python's json reads it into
a ``str`` that no UTF-8 encoder (orjson, PostgreSQL) accepts, so it would fail later as a 500;
here it is a 400 naming the field. A pair of surrogates is read as one character, as it should.
A NUL in a path or query parameter (``%00``) would fail the read model's query the same way.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import Request
from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from domain.base import InvalidValueError
from domain.values import storable

SURROGATE = re.compile("[\ud800-\udfff]")
UNPAIRED = PydanticCustomError(
    "unpaired_surrogate", "must be Unicode text: an unpaired surrogate (\\ud800-\\udfff) is not"
)


def unpaired_surrogate_at(value: Any) -> tuple[str | int, ...] | None:
    """Where in a parsed JSON value a string holds an unpaired surrogate (``None``: nowhere).

    Depth first, in document order, without recursion: a deeply nested body is no 500.
    """
    stack: list[tuple[tuple[str | int, ...], Any]] = [((), value)]
    while stack:
        path, item = stack.pop()
        if type(item) is str:
            if SURROGATE.search(item):
                return path
        elif type(item) is dict:
            for k in item:
                if SURROGATE.search(k):  # a name: said with the surrogate escaped
                    return (*path, k.encode("utf-8", "backslashreplace").decode())
            stack.extend(((*path, k), v) for k, v in reversed(item.items()))
        elif type(item) is list:
            stack.extend(((*path, i), v) for i, v in reversed(list(enumerate(item))))
    return None


def refuse_unpaired_surrogates(title: str, data: Any) -> None:
    """A validation error naming the first field whose text holds an unpaired surrogate."""
    at = unpaired_surrogate_at(data)
    if at is not None:
        details = InitErrorDetails(type=UNPAIRED, loc=at, input=None)
        raise ValidationError.from_exception_data(title, [details])


async def storable_parameters(request: Request) -> None:
    """Path and query parameters are text a query can hold (an app-wide dependency)."""
    for name, value in (*request.path_params.items(), *request.query_params.multi_items()):
        if isinstance(value, str) and not storable(value):
            raise InvalidValueError(name, f"{name} must not contain NUL (%00)")
