"""A tenant's export: its events in global order, its replayed state and its bill, as lines.

Events are streamed from a server-side cursor, in a repeatable-read snapshot, a few pages read
ahead by a helper thread, and replayed as they pass: memory holds the tenant's (small) aggregate
states and per-day sums, never more than a few pages of events.
The audit log is the index: it has one entry per event of every tenant-owned aggregate, with
the tenant and the event's position; every event up to the audit projection's position (read in
the same snapshot) has its entry. NameIndex, price book and operator events have no tenant.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from datetime import datetime
from functools import cache
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic, resolve_topic
from psycopg import Connection
from psycopg.rows import tuple_row

from domain.usage import UsageBatch
from projections.engine.read_ahead import read_ahead
from projections.engine.source import EventSource
from projections.readmodels.audit import SCHEMA as AUDIT
from projections.readmodels.audit import target_type
from projections.reports.event_billing import EventBilling
from projections.reports.replay import (
    NO_STATE,
    StateReplay,
    aggregate_class,
    event_line,
    iso,
    stored_usage_line,
)

FORMAT = "hostplane-export"
FORMAT_VERSION = 1
ITERSIZE = 2000  # rows per round trip of the server-side cursor (about a MB of usage)
READ_AHEAD_PAGES = 2  # pages fetched ahead at most: memory stays a few pages
USAGE_TOPIC = get_topic(UsageBatch.Recorded)

BEGIN_SNAPSHOT = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"
SQL_AUDIT_POSITION = f"SELECT position FROM {AUDIT}.tracking"
# An audit entry's position is its event's notification id; walking the tenant's entries in
# position order (the audit log's index on tenant and position) streams the events in order.
SQL_COUNT = (
    f"SELECT target_type, count(*) AS n FROM {AUDIT}.entries"
    " WHERE tenant_id = %(tenant)s AND position <= %(head)s"
    " AND (%(as_of)s::timestamptz IS NULL OR at <= %(as_of)s) GROUP BY target_type"
)
SQL_EVENTS = (
    "SELECT e.notification_id, e.originator_id::text, e.originator_version, e.topic, e.state"
    f" FROM {AUDIT}.entries a JOIN {{events}} e ON e.notification_id = a.position"
    " WHERE a.tenant_id = %(tenant)s AND a.position <= %(head)s ORDER BY a.position"
)


class SnapshotBehindError(Exception):
    """The read models needed as an index have not reached the head of the log yet."""


@cache
def kind_of_topic(topic: str) -> tuple[str, bool]:
    """An event topic's aggregate type (``key``) and whether that aggregate's state is kept."""
    cls = aggregate_class(resolve_topic(topic))
    return target_type(cls), not issubclass(cls, NO_STATE)


class Cutoff:
    """Which events are replayed at ``as_of``: those at or before it, versions unbroken."""

    def __init__(self, as_of: datetime | None) -> None:
        self.as_of = as_of
        self.cut: set[str] = set()  # aggregates with state whose later events are left out

    def keeps(self, originator_id: str, stateful: bool, timestamp: datetime) -> bool:
        if self.as_of is None:
            return True
        if originator_id in self.cut:
            return False
        if timestamp > self.as_of:
            if stateful:
                self.cut.add(originator_id)
            return False
        return True


def snapshot(conn: Connection[Any]) -> int:
    """Start the export's snapshot (call inside a transaction); returns its head position."""
    conn.execute(BEGIN_SNAPSHOT)
    row = conn.execute(SQL_AUDIT_POSITION).fetchone()
    return row["position"] if row else 0


def count_events(
    conn: Connection[Any], tenant_id: UUID, head: int, as_of: datetime | None
) -> dict[str, int]:
    """How many events of each aggregate type the export will hold."""
    params = {"head": head, "tenant": tenant_id, "as_of": as_of}
    rows = conn.execute(SQL_COUNT, params).fetchall()
    return {r["target_type"]: r["n"] for r in sorted(rows, key=lambda r: r["target_type"])}


# position, aggregate id (text), version, topic, stored state
Row = tuple[int, str, int, str, bytes]


def _fetch_pages(
    conn: Connection[Any], source: EventSource, tenant_id: UUID, head: int
) -> Generator[list[Row], None, None]:
    sql = SQL_EVENTS.format(events=source.table)
    # Plain tuples in binary: no dict per row, and the state's bytes are not sent as hex.
    with conn.cursor(name="hostplane_export_events", row_factory=tuple_row, binary=True) as curs:
        curs.execute(sql, {"head": head, "tenant": tenant_id})
        while rows := curs.fetchmany(ITERSIZE):
            yield rows


def stream_pages(
    conn: Connection[Any], source: EventSource, tenant_id: UUID, head: int
) -> Iterator[list[Row]]:
    """The tenant's stored events up to ``head``, as stored, in pages read ahead.

    The connection belongs to the reading thread until the pages are exhausted or closed.
    """
    # PostgreSQL produces the next page while this thread works on the current one.
    return read_ahead(_fetch_pages(conn, source, tenant_id, head), depth=READ_AHEAD_PAGES)


def stream_rows(
    conn: Connection[Any], source: EventSource, tenant_id: UUID, head: int
) -> Iterator[Row]:
    """The tenant's stored events up to ``head``, as they are stored."""
    for page in stream_pages(conn, source, tenant_id, head):
        yield from page


def to_event(source: EventSource, row: Row) -> Any:
    """The domain event of a stored row, through the event store's own mapper."""
    _, originator_id, version, topic, state = row
    return source.mapper.to_domain_event(
        StoredEvent(
            originator_id=UUID(originator_id),
            originator_version=version,
            topic=topic,
            state=bytes(state),
        )
    )


def stream_events(
    conn: Connection[Any], source: EventSource, tenant_id: UUID, head: int
) -> Iterator[tuple[int, str, Any]]:
    """The tenant's events up to ``head``: position, topic and event, a page at a time."""
    for row in stream_rows(conn, source, tenant_id, head):
        yield row[0], row[3], to_event(source, row)


def reads_stored_json(source: EventSource) -> bool:
    """Whether stored states are plain JSON bytes (neither encrypted nor compressed)."""
    return source.mapper.cipher is None and source.mapper.compressor is None


def export_lines(
    conn: Connection[Any],
    source: EventSource,
    tenant_id: UUID,
    as_of: datetime | None,
    now: datetime,
    head: int,
) -> Iterator[dict[str, Any]]:
    """Header, events, replayed state, monthly bill, end: every line of one export.

    Call within the snapshot's transaction (see ``snapshot``).
    """
    counts = count_events(conn, tenant_id, head, as_of)
    yield {
        "kind": "header",
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "tenant_id": str(tenant_id),
        "generated_at": iso(now),
        "as_of": iso(as_of) if as_of else None,
        "position": head,
        "counts": {"events": sum(counts.values()), **counts},
    }
    states, bill, cutoff = StateReplay(), EventBilling(), Cutoff(as_of)
    events = 0
    raw = reads_stored_json(source)
    for row in stream_rows(conn, source, tenant_id, head):
        position, aggregate_id, version, topic, state = row
        # Usage batches, the bulk of an export, are read from their stored JSON: they have no
        # state to replay and their bill needs only the records' plain values.
        line = None
        if raw and topic == USAGE_TOPIC:
            line = stored_usage_line(position, aggregate_id, version, orjson.loads(state))
        if line is not None:
            if as_of is not None and datetime.fromisoformat(line["at"]) > as_of:
                continue
            events += 1
            bill.add_usage(line["data"]["rates"], line["data"]["records"])
            yield line
            continue
        event = to_event(source, row)
        if not cutoff.keeps(aggregate_id, kind_of_topic(topic)[1], event.timestamp):
            continue
        events += 1
        states.apply(event)
        bill.apply(event)
        yield event_line(position, event)
    bill.close(as_of if as_of is not None and as_of < now else now)
    yield from states.lines()
    yield from bill.lines()
    yield {"kind": "end", "events": events, "states": len(states.aggregates)}
