"""A batch of events read from the log: decoded once, handed to each read model in order."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from eventsourcing.persistence import StoredEvent
from psycopg import Cursor
from psycopg.rows import tuple_row

from projections.engine.base import Projection
from projections.engine.source import EventSource


@dataclass
class Batch:
    """Events ``after < id <= max_id`` of some topics, at most ``limit`` of them."""

    source: EventSource
    after: int
    max_id: int
    topics: list[str]
    limit: int
    rows: list[tuple[Any, ...]]  # (notification_id, originator_id, version, topic, state)
    ids: list[int] = field(init=False)
    events: list[Any] = field(init=False)
    by_topic: dict[str, list[int]] = field(init=False)  # row indexes, ascending

    def __post_init__(self) -> None:
        self.ids = [r[0] for r in self.rows]
        self.events = [None] * len(self.rows)
        self.by_topic = {}
        for i, r in enumerate(self.rows):
            self.by_topic.setdefault(r[3], []).append(i)

    @property
    def reached(self) -> int:
        """The position every reader of this batch is at once it is applied.

        Ids up to max_id are all committed (the events table is written under an exclusive
        lock), so once a batch is not full its readers have seen everything up to max_id.
        """
        return self.ids[-1] if len(self.rows) == self.limit else self.max_id

    @property
    def state_bytes(self) -> int:
        return sum(len(r[4]) for r in self.rows)

    def event(self, i: int) -> Any:
        event = self.events[i]
        if event is None:
            _, originator_id, version, topic, state = self.rows[i]
            event = self.events[i] = self.source.mapper.to_domain_event(
                StoredEvent(
                    originator_id=originator_id,
                    originator_version=version,
                    topic=topic,
                    state=bytes(state),
                )
            )
        return event

    def decode_all(self) -> Batch:
        for i in range(len(self.rows)):
            self.event(i)
        return self

    def for_reader(self, topics: Sequence[str], position: int) -> Iterator[tuple[int, Any]]:
        """``(notification id, event)`` of the given topics past ``position``, in log order."""
        lists = [self.by_topic[t] for t in topics if t in self.by_topic]
        if not lists:
            return
        indexes = lists[0] if len(lists) == 1 else sorted(i for li in lists for i in li)
        start = bisect_right(indexes, bisect_right(self.ids, position) - 1)
        for i in indexes[start:]:
            yield self.ids[i], self.event(i)


def read_batch(
    curs: Cursor[Any], source: EventSource, after: int, max_id: int, topics: list[str], limit: int
) -> Batch:
    """Read a batch on the caller's connection (binary: bytea comes as bytes, not hex)."""
    with curs.connection.cursor(binary=True, row_factory=tuple_row) as reader:
        rows = reader.execute(source.select_sql(), (after, max_id, topics, limit)).fetchall()
    return Batch(source, after, max_id, topics, limit, rows)


class BatchSizer:
    """How many events the next batch reads: a cap, or fewer when the events are big.

    Stored state per batch, roughly: a usage batch of a thousand records is a thousand times
    bigger than a key's event, and a batch of them must still fit in memory.
    """

    def __init__(self, batch_bytes: int) -> None:
        self.batch_bytes = batch_bytes
        # Stored bytes per event in the last batch read; at first, assume big ones: the
        # first batch of a rebuild may be all usage batches of a thousand records each.
        self.event_bytes = batch_bytes / 1_000

    def limit(self, cap: int) -> int:
        """Events to read in the next batch: ``cap``, or fewer if events are big."""
        return max(1, min(cap, int(self.batch_bytes / self.event_bytes)))

    def saw(self, batch: Batch) -> None:
        """Size the next batches after this one's events."""
        if batch.rows:
            self.event_bytes = max(100.0, batch.state_bytes / len(batch.rows))


def apply_events(
    curs: Cursor[Any], projection: Projection, schema: str, position: int, batch: Batch
) -> int:
    """Apply a batch's events past ``position`` to one projection and write what it folded,
    in the caller's transaction. Returns the events applied (1 for none: its position moves)."""
    projection.begin(schema)
    count = 0
    for notification_id, event in batch.for_reader(projection.topics(), position):
        projection.handle(curs, event, schema, notification_id)
        count += 1
    projection.flush(curs, schema)
    return count or 1


class Prefetcher:
    """Reads and decodes the next batch while the current one is being written.

    Used once a batch comes back full (a backlog, or a rebuild): the writes wait on PostgreSQL
    most of the time, and the next batch's reading and decoding fill that time on another
    connection. Events are immutable once their id is at or below the head read, so a batch
    read ahead is the batch the runner would have read, if it still starts at the position
    the runner finds (another process may have moved it: then it is read again).
    """

    def __init__(self, pool: Any, source: EventSource) -> None:
        self.pool = pool
        self.source = source
        self._executor: ThreadPoolExecutor | None = None  # made when first needed
        self._next: Future[Batch] | None = None
        self._key: tuple[int, int, tuple[str, ...], int] | None = None

    def start(self, after: int, max_id: int, topics: list[str], limit: int) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="projections-read")
        self._key = (after, max_id, tuple(topics), limit)
        self._next = self._executor.submit(self._read, after, max_id, topics, limit)

    def _read(self, after: int, max_id: int, topics: list[str], limit: int) -> Batch:
        with self.pool.connection() as conn, conn.cursor() as curs:
            batch = read_batch(curs, self.source, after, max_id, topics, limit)
        return batch.decode_all()

    def take(self, after: int, max_id: int, topics: list[str]) -> Batch | None:
        """The batch read ahead if it starts where the caller is, else ``None``."""
        future, key = self._next, self._key
        self._next = self._key = None
        if future is None or key is None:
            return None
        batch = future.result()
        if key[0] != after or key[1] > max_id or key[2] != tuple(topics):
            return None
        return batch

    def close(self) -> None:
        if self._next is not None:
            self._next.cancel()
        if self._executor is not None:
            self._executor.shutdown(wait=True)


SQL_SET_POSITION = "UPDATE {s}.tracking SET position = %s"


def set_positions(curs: Cursor[Any], updates: Sequence[tuple[str, int]]) -> None:
    """Record each schema's new position, all in one statement (inside the batch's transaction)."""
    curs.execute(
        "WITH "
        + ", ".join(f"u{i} AS ({SQL_SET_POSITION.format(s=s)})" for i, (s, _) in enumerate(updates))
        + " SELECT 1",
        [position for _, position in updates],
    )
