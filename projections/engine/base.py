"""A projection: an event dispatcher plus the tables it keeps, in a schema of its own."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.utils import get_topic
from psycopg import Cursor

Handler = Callable[[Any, Cursor[Any], Any], None]


def live_schema(name: str) -> str:
    return f"rm_{name}"


class Projection:
    """Subclasses name their tables (with ``{s}`` for the schema) and one handler per event class.

    The runner gives each batch of events to ``handle`` inside one transaction that also
    records the projection's position, so rows and position never disagree.
    """

    name: ClassVar[str]
    tables: ClassVar[list[str]]
    # Secondary indexes no handler needs while writing: a rebuild creates them after its bulk
    # load (one sort per index instead of an insert into each index per row).
    indexes: ClassVar[list[str]] = []
    handlers: ClassVar[dict[type, Handler]]

    @classmethod
    def topics(cls) -> list[str]:
        return [get_topic(t) for t in cls.handlers]

    @classmethod
    def schema(cls) -> str:
        return live_schema(cls.name)

    # True for a projection whose handlers only fold events in memory (never use the cursor)
    # and write at ``flush``: a rebuild folds its next batch while the last one is written.
    folds: ClassVar[bool] = False

    def begin(self, schema: str) -> None:
        """A batch starts (projections that fold a batch before writing reset here)."""

    def flush(self, curs: Cursor[Any], schema: str) -> None:
        """A batch ends: write what was folded, in the batch's transaction."""
        self.detach(schema)(curs)

    def detach(self, schema: str) -> Callable[[Cursor[Any]], None]:
        """Take what a batch folded; the returned function writes it (``folds`` projections
        write it from another thread, while the next batch is being folded)."""
        return lambda curs: None

    def handle(self, curs: Cursor[Any], event: Any, schema: str, position: int = 0) -> None:
        handler = self.handlers.get(type(event))
        if handler is not None:
            handler(self, curs, _Scoped(event, schema, position))


class _Scoped:
    """An event with the schema its handler must write to (the live one, or a rebuild's).

    ``position`` is the event's notification id: its place in the global order.
    """

    __slots__ = ("event", "position", "schema")

    def __init__(self, event: Any, schema: str, position: int = 0) -> None:
        self.event = event
        self.schema = schema
        self.position = position

    def __getattr__(self, item: str) -> Any:
        return getattr(self.event, item)

    def sql(self, statement: str) -> str:
        return statement.format(s=self.schema)


def encode_cursor(created_at: datetime, ident: UUID) -> str:
    raw = f"{created_at.isoformat()}|{ident}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    """Decode an opaque page cursor; ``ValueError`` if it isn't one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, ident = raw.split("|", 1)
        return datetime.fromisoformat(created), UUID(ident)
    except Exception as e:  # any malformed input is the caller's mistake
        raise ValueError("invalid cursor") from e


def keyset_page(
    curs: Cursor[Any],
    table: str,
    columns: str,
    filters: dict[str, Any],
    limit: int,
    cursor: str | None,
    shape: Callable[[dict[str, Any]], dict[str, Any]],
    extra_where: str = "true",
) -> tuple[list[dict[str, Any]], str | None]:
    """One page, newest first, after ``cursor``; returns the rows and the next cursor."""
    where, params = [extra_where], []
    for column, value in filters.items():
        where.append(f"{column} = %s")
        params.append(value)
    if cursor:
        created, ident = decode_cursor(cursor)
        where.append("(created_at, id) < (%s, %s)")
        params += [created, ident]
    query = (
        f"SELECT {columns} FROM {table} WHERE {' AND '.join(where)}"
        " ORDER BY created_at DESC, id DESC LIMIT %s"
    )
    return fetch_page(
        curs, query, params, limit, lambda r: encode_cursor(r["created_at"], r["id"]), shape
    )


def fetch_page(
    curs: Cursor[Any],
    query: str,
    params: list[Any],
    limit: int,
    cursor_of: Callable[[dict[str, Any]], str],
    shape: Callable[[dict[str, Any]], dict[str, Any]],
) -> tuple[list[dict[str, Any]], str | None]:
    """Run a keyset ``query`` ending in ``LIMIT %s`` for one row more than ``limit``: the rows
    of the page, shaped, and the cursor of its last row if more follow."""
    rows = curs.execute(query, (*params, limit + 1)).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    return [shape(r) for r in rows], cursor_of(rows[-1]) if more else None


def bucket_where(
    scope: UUID | None, start: datetime | None, end: datetime | None, key_id: UUID | None = None
) -> tuple[str, list[Any]]:
    """The WHERE clause of time-bucket tables: tenant (and key), and ``at`` in ``[start, end)``."""
    where, params = ["true"], []
    for column, value in (("tenant_id", scope), ("key_id", key_id)):
        if value is not None:
            where.append(f"{column} = %s")
            params.append(value)
    if start is not None:
        where.append("at >= %s")
        params.append(start)
    if end is not None:
        where.append("at < %s")
        params.append(end)
    return " AND ".join(where), params
