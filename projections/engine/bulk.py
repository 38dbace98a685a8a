"""A rebuild's bulk load: the next batch is read, decoded and folded while the last is written.

Only for a rebuild's fresh schemas, which the rebuild alone writes (it holds their rebuild
locks) and nobody reads until the swap. Each batch is still one transaction holding its rows
and its positions: exactly-once as in the live worker. What overlaps is Python and PostgreSQL:
while a writer thread sends batch N's folded rows and commits them (waiting on the socket,
without the GIL), the main thread folds batch N+1 in memory. Handlers that use the database
(the small read models) run after batch N is committed, on the same connection, in order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import Cursor
from psycopg.rows import dict_row

from projections.engine.batch import (
    Batch,
    BatchSizer,
    Prefetcher,
    apply_events,
    read_batch,
    set_positions,
)
from projections.engine.errors import ProjectionFailedError
from projections.engine.gcpause import gc_paused
from projections.engine.source import EventSource

if TYPE_CHECKING:
    from projections.engine.worker import Target

SQL_BULK_SESSION = "SET synchronous_commit = off"  # why: see ``ProjectionRunner.rebuild_many``

Writes = list[tuple[str, str, Callable[[Cursor[Any]], None]]]  # (name, schema, write)
Progress = Callable[[int, int], object]  # (position reached, the log's head)


def bulk_catch_up(
    targets: Sequence[Target],
    *,
    pool: Any,
    source: EventSource,
    conninfo: str,
    head: Callable[[], int],
    sizer: BatchSizer,
    cap: int,
    progress: Progress | None = None,
) -> dict[str, int]:
    """Bring fresh schemas up to the log's head; returns the events applied per schema.

    The runner passes what the load shares with it: its pool (to read batches), the event
    source, where to open the load's own connection, how to read the log's head, and how many
    events a batch reads (``sizer``, at most ``cap``; the load tells it the sizes it sees).
    ``progress`` hears the position all targets have reached and the head, after each batch.
    """
    totals = {schema: 0 for _, schema in targets}
    prefetcher = Prefetcher(pool, source)
    writer = ThreadPoolExecutor(1, thread_name_prefix="projections-write")
    pending: Future[None] | None = None
    with (
        gc_paused(),
        psycopg.connect(conninfo, row_factory=dict_row) as conn,
        conn.cursor() as curs,
    ):
        try:
            conn.execute(SQL_BULK_SESSION)
            conn.commit()
            rows = curs.execute(source.positions_sql([s for _, s in targets])).fetchall()
            positions = {r["schema"]: r["position"] for r in rows}
            conn.commit()
            while True:
                max_id = head()
                if progress is not None:
                    progress(min(positions.values()), max_id)
                behind = [(p, s) for p, s in targets if positions[s] < max_id]
                if not behind:
                    break
                lowest = min(positions[s] for _, s in behind)
                topics = sorted({t for p, _ in behind for t in p.topics()})
                batch = prefetcher.take(lowest, max_id, topics)
                if batch is None:
                    with pool.connection() as c, c.cursor() as reader:
                        limit = sizer.limit(cap)
                        batch = read_batch(reader, source, lowest, max_id, topics, limit)
                sizer.saw(batch)
                if batch.reached < max_id:
                    prefetcher.start(batch.reached, max_id, topics, sizer.limit(cap))
                applied: dict[str, int] = {}
                writes: Writes = []
                for projection, schema in behind:  # in memory: while the last batch is written
                    if projection.folds:
                        applied[schema] = _guarded(
                            projection.name, schema, _fold, projection, schema, positions, batch
                        )
                        writes.append((projection.name, schema, projection.detach(schema)))
                if pending is not None:
                    pending.result()  # the last batch is committed: the connection is free
                for projection, schema in behind:
                    if not projection.folds:
                        applied[schema] = _guarded(
                            projection.name,
                            schema,
                            apply_events,
                            curs,
                            projection,
                            schema,
                            positions[schema],
                            batch,
                        )
                for _, schema in behind:
                    positions[schema] = max(positions[schema], batch.reached)
                    totals[schema] += applied[schema]
                updates = [(s, positions[s]) for _, s in behind]
                pending = writer.submit(_write, conn, curs, writes, updates)
            if pending is not None:
                pending.result()
        except BaseException:
            if pending is not None:  # let the writer finish with the connection first
                wait([pending])
            conn.rollback()
            raise
        finally:
            writer.shutdown(wait=True)
            prefetcher.close()
    return totals


def _fold(projection: Any, schema: str, positions: dict[str, int], batch: Batch) -> int:
    projection.begin(schema)
    count = 0
    for notification_id, event in batch.for_reader(projection.topics(), positions[schema]):
        projection.handle(None, event, schema, notification_id)  # type: ignore[arg-type]
        count += 1
    return count or 1


def _guarded(name: str, schema: str, apply: Callable[..., int], *args: Any) -> int:
    try:
        return apply(*args)
    except Exception as e:
        raise ProjectionFailedError(name, schema) from e


def _write(
    conn: psycopg.Connection[Any],
    curs: Cursor[Any],
    writes: Writes,
    updates: list[tuple[str, int]],
) -> None:
    """Batch N's folded rows and every position, then its commit (on the writer thread)."""
    with gc_paused():
        for name, schema, write in writes:
            try:
                write(curs)
            except Exception as e:
                raise ProjectionFailedError(name, schema) from e
        set_positions(curs, updates)
        conn.commit()
