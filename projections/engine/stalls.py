"""A read model stalled by an event it cannot apply: found, recorded for every process, cleared.

When a projection's batch fails, its events are applied again one at a time, each in a savepoint:
the events before the first that fails are kept, the projection stays just before that one, and
the event (its position, its type, the error) is recorded in a table. Every process reads it:
``hostplane projections status``, and reads that would wait for that read model, which answer at
once instead of waiting out the read-your-writes bound. The record goes in the transaction that
takes the projection past the event (a fixed hostplane, or a rebuild).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import Cursor

from projections.engine.base import Projection
from projections.engine.batch import read_batch, set_positions
from projections.engine.errors import Stall
from projections.engine.source import EventSource

TABLE = "hostplane_projection_stalls"
SQL_CREATE_STALLS = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    schema text PRIMARY KEY,
    name text NOT NULL,
    position bigint NOT NULL,
    topic text NOT NULL,
    error text NOT NULL,
    since timestamptz NOT NULL DEFAULT now()
)"""
# ``since`` is when the projection first stopped at this event, however often it was retried.
SQL_RECORD = f"""
INSERT INTO {TABLE} (schema, name, position, topic, error) VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (schema) DO UPDATE SET position = excluded.position, topic = excluded.topic,
    error = excluded.error,
    since = CASE WHEN {TABLE}.position = excluded.position THEN {TABLE}.since ELSE now() END"""
SQL_CLEAR = f"DELETE FROM {TABLE} WHERE schema = ANY(%s)"

# How long a client is told to wait: an operator has to act, which takes a while.
RETRY_AFTER_SECONDS = 30
ERROR_CHARS = 1000  # of an error's text, kept


class ReadModelStalledError(Exception):
    """A read needs a read model that cannot apply an event, so it would wait for nothing.

    Raised by the reading gate at once (HTTP 503, ``read_model_stalled``); the details (the
    event, the error) are for the operator, in ``hostplane projections status``.
    """

    retry_after = RETRY_AFTER_SECONDS

    def __init__(self, names: Sequence[str]) -> None:
        which = ", ".join(sorted(names))
        super().__init__(
            f"the read model {which} cannot apply an event and is stalled; the operator can see"
            " why with `hostplane projections status`"
        )
        self.names = list(names)


def with_stalls(positions_sql: str) -> str:
    """``EventSource.positions_sql`` with each schema's stall, if any, beside its position:
    ``stalled_at`` (the event it cannot apply), ``stalled_name``, ``stalled_topic``,
    ``stalled_error`` and ``stalled_since``; NULL where the projection is not stalled."""
    return (
        "SELECT p.*, s.position AS stalled_at, s.name AS stalled_name, s.topic AS stalled_topic,"
        " s.error AS stalled_error, s.since AS stalled_since"
        f" FROM ({positions_sql}) p LEFT JOIN {TABLE} s ON s.schema = p.schema"
    )


def check_not_stalled(rows: Sequence[dict[str, Any]], target: int) -> None:
    """Of ``with_stalls`` rows: raise if a read model is stalled on an event at or before
    ``target`` (it cannot reach ``target`` until someone gets it past that event)."""
    stalled = [r["stalled_name"] for r in rows if stalled_before(r["stalled_at"], target)]
    if stalled:
        raise ReadModelStalledError(stalled)


def stalled_before(stalled_at: int | None, target: int) -> bool:
    return stalled_at is not None and stalled_at <= target


def apply_alone(
    conn: psycopg.Connection[Any],
    source: EventSource,
    projection: Projection,
    schema: str,
    limit: int,
) -> tuple[int, Stall | None]:
    """Apply a projection's next batch alone, one event at a time, in the caller's transaction
    (which holds the schema's lock); record the event it cannot apply, or clear the record
    once it got past it. Returns its position then, and that event's stall or ``None``."""
    with conn.cursor() as curs:
        row = curs.execute(with_stalls(source.positions_sql([schema]))).fetchone()
        position, stall = row["position"], None
        if position < (row["head"] or 0):
            position, stall = _one_by_one(curs, source, projection, schema, row, limit)
            set_positions(curs, [(schema, position)])
        if stall is None:
            if row["stalled_at"] is not None:
                curs.execute(SQL_CLEAR, ([schema],))
        elif (row["stalled_at"], row["stalled_error"]) != (stall.position, stall.error):
            curs.execute(SQL_RECORD, (schema, stall.name, stall.position, stall.topic, stall.error))
    return position, stall


def first_failure(
    conn: psycopg.Connection[Any],
    source: EventSource,
    projection: Projection,
    schema: str,
    limit: int,
) -> Stall | None:
    """The event a projection's next batch fails on when applied one at a time (a rebuild's,
    whose fresh schema nobody reads: it is left as it is); ``None`` if none fails alone."""
    with conn.cursor() as curs:
        row = curs.execute(source.positions_sql([schema])).fetchone()
        if row["position"] >= (row["head"] or 0):
            return None
        return _one_by_one(curs, source, projection, schema, row, limit)[1]


def _one_by_one(
    curs: Cursor[Any],
    source: EventSource,
    projection: Projection,
    schema: str,
    row: dict[str, Any],
    limit: int,
) -> tuple[int, Stall | None]:
    """Apply the events of a batch after ``row``'s position one at a time, each in a savepoint;
    stop at the first that fails. Returns the position reached (just before the failing event)
    and that event's stall, or the batch's end and ``None`` if every event applied alone.

    A broken connection or a cancelled statement is not the event's fault: it is raised.
    """
    batch = read_batch(curs, source, row["position"], row["head"], projection.topics(), limit)
    for i, notification_id in enumerate(batch.ids):
        try:
            with curs.connection.transaction():  # a savepoint: a failure undoes this event only
                projection.begin(schema)
                projection.handle(curs, batch.event(i), schema, notification_id)
                projection.flush(curs, schema)
        except psycopg.OperationalError:
            raise
        except Exception as e:
            error = readable(f"{type(e).__name__}: {e}")
            return notification_id - 1, Stall(
                projection.name, notification_id, batch.rows[i][3], error, e
            )
    return batch.reached, None


def readable(text: str) -> str:
    """An error's text as a text column can hold it: no NUL, no lone surrogate, bounded."""
    text = text.replace("\0", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= ERROR_CHARS else text[: ERROR_CHARS - 1] + "…"


def clear(curs: Cursor[Any], schemas: Sequence[str]) -> None:
    curs.execute(SQL_CLEAR, (list(schemas),))
