"""Rows for ``COPY ... FROM STDIN`` in PostgreSQL's text format, built as plain strings.

Formatting each value through psycopg's dumpers costs a Python call per value; a batch of
projected rows is instead joined into one string and written with one ``copy.write``.
"""

from __future__ import annotations

from collections.abc import Iterable

NULL = "\\N"
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def text(value: str | None) -> str:
    """A text value as COPY reads it back exactly (``None`` is NULL)."""
    return NULL if value is None else value.translate(_ESCAPES)


def lines(rows: Iterable[list[str]]) -> str:
    """Rows of already formatted columns as COPY text: tab-separated, one per line."""
    return "".join(["\t".join(row) + "\n" for row in rows])
