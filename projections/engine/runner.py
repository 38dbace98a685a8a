"""Runs projections: tracked, batched catch-up, and rebuilds that swap in a fresh schema."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from psycopg import Cursor

from projections.engine import stalls
from projections.engine.base import Projection
from projections.engine.batch import (
    BatchSizer,
    Prefetcher,
    apply_events,
    read_batch,
    set_positions,
)
from projections.engine.bulk import Progress, bulk_catch_up
from projections.engine.errors import ProjectionFailedError, Stall
from projections.engine.gcpause import gc_paused
from projections.engine.source import EventSource
from projections.engine.stalls import SQL_CREATE_STALLS, with_stalls
from projections.engine.worker import POSITIONS_CHANNEL, Target, Worker

__all__ = ["EventSource", "ProjectionFailedError", "ProjectionRunner", "Target"]

SQL_CREATE_SCHEMA = "CREATE SCHEMA IF NOT EXISTS {s}"
SQL_CREATE_TRACKING = (
    "CREATE TABLE IF NOT EXISTS {s}.tracking ("
    " id boolean PRIMARY KEY DEFAULT true CHECK (id), position bigint NOT NULL)"
)
SQL_INIT_TRACKING = "INSERT INTO {s}.tracking (position) VALUES (0) ON CONFLICT DO NOTHING"
# Several schemas in one statement, always in sorted order: two workers never deadlock.
SQL_LOCK_MANY = "SELECT pg_advisory_xact_lock(hashtext(s)) FROM unnest(%s::text[]) AS s"
# The rebuild lock is in another key space than SQL_LOCK_MANY (two-argument form).
SQL_REBUILD_LOCK = "SELECT pg_advisory_lock(hashtext(%s), 0)"
SQL_LOCK_SHARED_TABLES = "SELECT pg_advisory_xact_lock(hashtext('hostplane-schema'))"


class ProjectionRunner(Worker):
    """Keeps every projection caught up with the event store's global order."""

    def __init__(
        self,
        pool: Any,
        source: EventSource,
        projections: Sequence[Projection],
        conninfo: str,
        batch_size: int = 2000,
        rebuild_batch_size: int = 10_000,
        batch_bytes: int = 32 << 20,
    ) -> None:
        self.pool = pool  # a psycopg ConnectionPool yielding connections with dict rows
        self.source = source
        self.projections = {p.name: p for p in projections}
        self.conninfo = conninfo
        self.batch_size = batch_size  # events per batch at most, when catching up live
        self.rebuild_batch_size = rebuild_batch_size  # and when rebuilding
        self.sizer = BatchSizer(batch_bytes)  # fewer events per batch when they are big
        self._wake = threading.Event()
        self._advanced = threading.Condition()
        self._stop = threading.Event()
        self._unfollow = threading.Event()
        self._threads: list[threading.Thread] = []
        self._working: list[threading.Thread] = []
        # Positions this process has committed: lower bounds of the stored ones, so a reader
        # waiting for this process's own worker needn't ask the database again.
        self._committed: dict[str, int] = {}
        self._loop_events: dict[Any, Any] = {}  # see Worker.wait_for_async
        self._waiters = 0  # see Worker._waiting
        self._batch_began = 0.0  # see Worker._pace
        self._behind = False
        self._hurry = threading.Event()
        self._waiters_lock = threading.Lock()
        # Schemas this process's worker found stalled, and the event each one cannot apply.
        self._stalled: dict[str, int] = {}
        self.last_error: BaseException | None = None

    # -- schema ---------------------------------------------------------------------------

    def create_schema(self, projection: Projection, schema: str, indexes: bool = True) -> None:
        """Create a projection's schema, tables and (unless told not to) its indexes."""
        self.create_schemas([(projection, schema)], indexes)

    def create_schemas(self, targets: Sequence[Target], indexes: bool = True) -> None:
        """Create several projections' schemas in one transaction (DDL commits are slow)."""
        with self.pool.connection() as conn, conn.transaction(), conn.cursor() as curs:
            curs.execute(SQL_LOCK_MANY, (sorted(schema for _, schema in targets),))
            curs.execute(SQL_LOCK_SHARED_TABLES)  # two processes starting at once: one creates
            curs.execute(SQL_CREATE_STALLS)
            for projection, schema in targets:
                self._committed.pop(schema, None)
                statements = [SQL_CREATE_SCHEMA, SQL_CREATE_TRACKING, *projection.tables]
                if indexes:
                    statements += projection.indexes
                for statement in statements:
                    curs.execute(statement.format(s=schema))
                curs.execute(SQL_INIT_TRACKING.format(s=schema))

    def create_indexes(self, targets: Sequence[Target]) -> None:
        with self.pool.connection() as conn, conn.transaction(), conn.cursor() as curs:
            for projection, schema in targets:
                for statement in projection.indexes:
                    curs.execute(statement.format(s=schema))

    def create_all(self) -> None:
        self.create_schemas([(p, p.schema()) for p in self.projections.values()])

    # -- catching up ----------------------------------------------------------------------

    def _apply_batch(
        self,
        curs: Cursor[Any],
        targets: Sequence[Target],
        prefetcher: Prefetcher | None = None,
    ) -> dict[str, tuple[int, int]]:
        """Apply the next batch of events to each target within the caller's transaction.

        The log is read and each event decoded once for all targets; each target gets the
        events past its own position that it handles. Returns the events applied per target
        (1 for a target that only moved its position) and its new position, nothing for
        targets already at head. A ``prefetcher`` reads the batch after this one meanwhile.
        """
        schemas = sorted(schema for _, schema in targets)
        curs.execute(SQL_LOCK_MANY, (schemas,))  # one worker at a time per schema, any process
        rows = curs.execute(with_stalls(self.source.positions_sql(schemas))).fetchall()
        positions = {r["schema"]: r["position"] for r in rows}
        stalled_at = {r["schema"]: r["stalled_at"] for r in rows}
        max_id = rows[0]["head"] or 0
        behind = [(p, s) for p, s in targets if positions[s] < max_id]
        if not behind:
            return {}
        lowest = min(positions[s] for _, s in behind)
        topics = sorted({t for p, _ in behind for t in p.topics()})
        batch = prefetcher.take(lowest, max_id, topics) if prefetcher else None
        if batch is None:
            limit = self.sizer.limit(self.batch_size)
            batch = read_batch(curs, self.source, lowest, max_id, topics, limit)
        self.sizer.saw(batch)
        reached = batch.reached
        self._behind = reached < max_id
        if prefetcher and reached < max_id:
            prefetcher.start(reached, max_id, topics, self.sizer.limit(self.batch_size))
        applied: dict[str, int] = {}
        for projection, schema in behind:
            try:
                applied[schema] = apply_events(curs, projection, schema, positions[schema], batch)
            except Exception as e:
                raise ProjectionFailedError(projection.name, schema) from e
        updates = [(s, max(positions[s], reached)) for _, s in behind]
        set_positions(curs, updates)
        past = [s for s, p in updates if stalled_at[s] is not None and p >= stalled_at[s]]
        if past:  # a stalled read model got past its event (fixed, say): it is stalled no more
            stalls.clear(curs, past)
        return {s: (applied[s], position) for s, position in updates}

    def catch_up_many(
        self, targets: Sequence[Target], pace: Callable[[], None] | None = None
    ) -> dict[str, int]:
        """Apply batches to every target until all have reached the end of the log.

        Returns the events applied per schema. If a target fails, its batch rolls back with
        the others' and ``ProjectionFailedError`` names it; what was committed before stays.
        ``pace`` is called before each batch after the first (the live worker's ``_pace``).
        """
        totals = {schema: 0 for _, schema in targets}
        prefetcher = Prefetcher(self.pool, self.source)  # starts a thread only for a backlog
        try:
            while True:
                self._batch_began = time.monotonic()
                self._hurry.clear()  # this batch reads what came so far
                with (
                    gc_paused(),
                    self.pool.connection() as conn,
                    conn.transaction(),
                    conn.cursor() as curs,
                ):
                    applied = self._apply_batch(curs, targets, prefetcher)
                    if applied:  # API processes without a worker wait on this (``follow``)
                        curs.execute(f'NOTIFY "{POSITIONS_CHANNEL}"')
                if not applied:
                    return totals
                for schema, (n, position) in applied.items():
                    totals[schema] += n
                    self._committed[schema] = position
                    if self._stalled.get(schema, position + 1) <= position:
                        del self._stalled[schema]
                self._advance()
                if pace is not None:
                    pace()
        finally:
            prefetcher.close()

    def catch_up(self, name: str, schema: str | None = None) -> int:
        """Apply batches until the projection has reached the end of the log; returns events."""
        projection = self.projections[name]
        schema = schema or projection.schema()
        try:
            return self.catch_up_many([(projection, schema)])[schema]
        except ProjectionFailedError as e:
            raise e.__cause__ from None  # type: ignore[misc]

    def catch_up_all(self) -> None:
        self.catch_up_many([(p, p.schema()) for p in self.projections.values()])

    # -- an event a read model cannot apply -----------------------------------------------

    def apply_alone(self, name: str) -> Stall | None:
        """Apply a projection's next batch alone, one event at a time: the events before the
        first it cannot apply are kept, and that event is recorded (``projections.engine.stalls``)
        for every process to see. Returns it, or ``None`` if the projection got past it."""
        schema = self.projections[name].schema()
        with gc_paused(), self.pool.connection() as conn, conn.transaction():
            conn.execute(SQL_LOCK_MANY, ([schema],))
            position, stall = stalls.apply_alone(
                conn, self.source, self.projections[name], schema, self.sizer.limit(self.batch_size)
            )
            conn.execute(f'NOTIFY "{POSITIONS_CHANNEL}"')
        self._committed[schema] = position
        if stall is None:
            self._stalled.pop(schema, None)
        else:
            self._stalled[schema] = stall.position
        self._advance()  # waits for it go on, or (``fail_if_stalled``) give up at once
        return stall

    def rebuild(self, name: str) -> int:
        """Rebuild a projection from position 0 beside the live copy, then swap it in."""
        return self.rebuild_many([name])[name]

    def rebuild_many(
        self, names: Sequence[str], progress: Progress | None = None
    ) -> dict[str, int]:
        """Rebuild projections from position 0 beside their live copies, reading the log once,
        then swap them all in, in one transaction. Returns the events replayed per name.
        ``progress`` hears the log position the copies have reached, and the head, as they
        load (the head moves on while the API serves)."""
        projections = [self.projections[n] for n in names]
        fresh = [(p, f"{p.schema()}__rebuild") for p in projections]
        # One rebuild of a projection at a time, across processes: a second one waits its turn
        # instead of dropping the first one's copy under it. The locks go with the connection.
        with psycopg.connect(self.conninfo, autocommit=True) as guard:
            for _, schema in sorted(fresh, key=lambda t: t[1]):
                guard.execute(SQL_REBUILD_LOCK, (schema,))
            with self.pool.connection() as conn, conn.transaction():
                for _, schema in fresh:
                    conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            self.create_schemas(fresh, indexes=False)
            try:
                applied = self._load_and_swap(projections, fresh, progress)
            except ProjectionFailedError as e:  # the live copies stay as they were
                with self.pool.connection() as conn, conn.transaction():
                    stall = stalls.first_failure(
                        conn,
                        self.source,
                        self.projections[e.name],
                        e.schema,
                        self.sizer.limit(self.rebuild_batch_size),
                    )
                raise ProjectionFailedError(e.name, e.schema, stall) from e.__cause__
        for projection in projections:
            self._stalled.pop(projection.schema(), None)
        return {p.name: applied[schema] for p, schema in fresh}

    def _load_and_swap(
        self,
        projections: Sequence[Projection],
        fresh: Sequence[Target],
        progress: Progress | None = None,
    ) -> dict[str, int]:
        # The bulk load commits without waiting for the disk: its schemas are fresh and
        # unread, a crash leaves them to be dropped by the next rebuild, and the swap's own
        # (synchronous) commit makes every earlier one durable, the log being sequential.
        applied = bulk_catch_up(
            fresh,
            pool=self.pool,
            source=self.source,
            conninfo=self.conninfo,
            head=self.max_notification_id,
            sizer=self.sizer,
            cap=self.rebuild_batch_size,
            progress=progress,
        )
        self.create_indexes(fresh)
        with self.pool.connection() as conn, conn.transaction(), conn.cursor() as curs:
            live = sorted(p.schema() for p in projections)
            curs.execute(SQL_LOCK_MANY, (live,))
            while self._apply_batch(curs, fresh):
                pass
            for projection, schema in fresh:
                curs.execute(f"DROP SCHEMA IF EXISTS {projection.schema()} CASCADE")
                curs.execute(f"ALTER SCHEMA {schema} RENAME TO {projection.schema()}")
            stalls.clear(curs, live)  # each has reached the head: none is stalled
        return applied
