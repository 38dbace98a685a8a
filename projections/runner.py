"""Runs projections: tracked, batched catch-up, and rebuilds that swap in a fresh schema."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from eventsourcing.persistence import Mapper, StoredEvent
from psycopg import Cursor
from psycopg.rows import dict_row

from projections.base import Projection, live_schema

log = logging.getLogger(__name__)

SQL_CREATE_SCHEMA = "CREATE SCHEMA IF NOT EXISTS {s}"
SQL_CREATE_TRACKING = (
    "CREATE TABLE IF NOT EXISTS {s}.tracking ("
    " id boolean PRIMARY KEY DEFAULT true CHECK (id), position bigint NOT NULL)"
)
SQL_INIT_TRACKING = "INSERT INTO {s}.tracking (position) VALUES (0) ON CONFLICT DO NOTHING"
SQL_POSITION = "SELECT position FROM {s}.tracking"
SQL_SET_POSITION = "UPDATE {s}.tracking SET position = %s"
SQL_LOCK = "SELECT pg_advisory_xact_lock(hashtext(%s))"
SQL_REBUILD_LOCK = "SELECT pg_advisory_lock(hashtext(%s), 0)"  # another key space than SQL_LOCK
SQL_SCHEMA_EXISTS = "SELECT 1 FROM pg_namespace WHERE nspname = %s"


@dataclass
class EventSource:
    """Where events are read from: the application's events table and its mapper."""

    table: str  # schema-qualified, already quoted
    channel: str  # the channel the event store NOTIFYs on each write
    mapper: Mapper[Any]

    def max_id_sql(self) -> str:
        return f"SELECT max(notification_id) AS m FROM {self.table}"

    def select_sql(self) -> str:
        return (
            "SELECT notification_id, originator_id, originator_version, topic, state"
            f" FROM {self.table} WHERE notification_id > %s AND notification_id <= %s"
            " AND topic = ANY(%s) ORDER BY notification_id LIMIT %s"
        )


class ProjectionRunner:
    """Keeps every projection caught up with the event store's global order."""

    def __init__(
        self,
        pool: Any,
        source: EventSource,
        projections: Sequence[Projection],
        conninfo: str,
        batch_size: int = 2000,
    ) -> None:
        self.pool = pool  # a psycopg ConnectionPool yielding connections with dict rows
        self.source = source
        self.projections = {p.name: p for p in projections}
        self.conninfo = conninfo
        self.batch_size = batch_size
        self._wake = threading.Event()
        self._advanced = threading.Condition()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.last_error: BaseException | None = None

    # -- schema ---------------------------------------------------------------------------

    def create_schema(self, projection: Projection, schema: str) -> None:
        with self.pool.connection() as conn, conn.transaction(), conn.cursor() as curs:
            curs.execute(SQL_LOCK, (schema,))
            for statement in (SQL_CREATE_SCHEMA, SQL_CREATE_TRACKING, *projection.tables):
                curs.execute(statement.format(s=schema))
            curs.execute(SQL_INIT_TRACKING.format(s=schema))

    def create_all(self) -> None:
        for projection in self.projections.values():
            self.create_schema(projection, projection.schema())

    # -- catching up ----------------------------------------------------------------------

    def _apply_batch(self, curs: Cursor[Any], projection: Projection, schema: str) -> int:
        """Apply the next batch into ``schema`` within the caller's transaction."""
        row = curs.execute(SQL_POSITION.format(s=schema)).fetchone()
        position = row["position"]
        max_id = curs.execute(self.source.max_id_sql()).fetchone()["m"] or 0
        if max_id <= position:
            return 0
        rows = curs.execute(
            self.source.select_sql(),
            (position, max_id, projection.topics(), self.batch_size),
        ).fetchall()
        projection.begin(schema)
        for r in rows:
            event = self.source.mapper.to_domain_event(
                StoredEvent(
                    originator_id=r["originator_id"],
                    originator_version=r["originator_version"],
                    topic=r["topic"],
                    state=bytes(r["state"]),
                )
            )
            projection.handle(curs, event, schema, r["notification_id"])
        projection.flush(curs, schema)
        # Ids up to max_id are all committed (the events table is written under an exclusive
        # lock), so once a batch is not full the projection has seen everything up to max_id.
        new_position = rows[-1]["notification_id"] if len(rows) == self.batch_size else max_id
        curs.execute(SQL_SET_POSITION.format(s=schema), (new_position,))
        return len(rows) or 1

    def catch_up(self, name: str, schema: str | None = None) -> int:
        """Apply batches until the projection has reached the end of the log; returns events."""
        projection = self.projections[name]
        schema = schema or projection.schema()
        total = 0
        while True:
            with self.pool.connection() as conn, conn.transaction(), conn.cursor() as curs:
                # One worker at a time per schema, across processes too.
                curs.execute(SQL_LOCK, (schema,))
                applied = self._apply_batch(curs, projection, schema)
            if applied == 0:
                return total
            total += applied
            with self._advanced:
                self._advanced.notify_all()

    def catch_up_all(self) -> None:
        for name in self.projections:
            self.catch_up(name)

    def rebuild(self, name: str) -> int:
        """Rebuild a projection from position 0 beside the live copy, then swap it in."""
        projection = self.projections[name]
        live = projection.schema()
        fresh = f"{live}__rebuild"
        # One rebuild of a projection at a time, across processes: a second one waits its turn
        # instead of dropping the first one's copy under it. The lock goes with the connection.
        with psycopg.connect(self.conninfo, autocommit=True) as guard:
            guard.execute(SQL_REBUILD_LOCK, (fresh,))
            with self.pool.connection() as conn:
                conn.execute(f"DROP SCHEMA IF EXISTS {fresh} CASCADE")
            self.create_schema(projection, fresh)
            applied = self.catch_up(name, fresh)
            with self.pool.connection() as conn, conn.transaction(), conn.cursor() as curs:
                curs.execute(SQL_LOCK, (live,))
                while self._apply_batch(curs, projection, fresh):
                    pass
                curs.execute(f"DROP SCHEMA IF EXISTS {live} CASCADE")
                curs.execute(f"ALTER SCHEMA {fresh} RENAME TO {live}")
        return applied

    # -- status and waiting ---------------------------------------------------------------

    def position(self, name: str) -> int:
        with self.pool.connection() as conn:
            row = conn.execute(SQL_POSITION.format(s=live_schema(name))).fetchone()
            return row["position"]

    def max_notification_id(self) -> int:
        with self.pool.connection() as conn:
            return conn.execute(self.source.max_id_sql()).fetchone()["m"] or 0

    def status(self) -> list[dict[str, Any]]:
        head = self.max_notification_id()
        out = []
        for name in self.projections:
            position = self.position(name)
            out.append({"name": name, "position": position, "head": head, "lag": head - position})
        return out

    def positions(self, names: Sequence[str]) -> dict[str, int]:
        """The live positions of several projections, in one query."""
        union = " UNION ALL ".join(
            f"SELECT '{n}' AS name, position FROM {live_schema(n)}.tracking" for n in names
        )
        with self.pool.connection() as conn:
            return {r["name"]: r["position"] for r in conn.execute(union).fetchall()}

    def wait_for(self, names: Sequence[str], target: int, timeout: float) -> bool:
        """Wait (bounded) until the projections have processed the log up to ``target``.

        A batch committed by this process's worker wakes the waiters at once; a short poll
        covers workers in other processes.
        """
        deadline = time.monotonic() + timeout
        while True:
            if all(p >= target for p in self.positions(names).values()):
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._wake.set()
            with self._advanced:
                self._advanced.wait(timeout=min(remaining, 0.02))

    # -- background threads ---------------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        for target in (self._listen, self._work):
            thread = threading.Thread(
                target=target, name=f"projections-{target.__name__}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()

    def _listen(self) -> None:
        """Wake the worker whenever the event store NOTIFYs a write (from any process)."""
        channel = self.source.channel
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True, row_factory=dict_row) as conn:
                    conn.execute(f'LISTEN "{channel}"')
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=0.5, stop_after=1):
                            self._wake.set()
            except Exception as e:  # the database went away: retry, the poll still runs
                log.warning("projection listener reconnecting: %s", type(e).__name__)
                self._stop.wait(1.0)

    def _work(self) -> None:
        retry_at: dict[str, float] = {}  # projections whose last batch failed
        while not self._stop.is_set():
            self._wake.wait(timeout=1.0)
            self._wake.clear()
            if self._stop.is_set():
                return
            for name in list(self.projections):
                if retry_at.get(name, 0.0) > time.monotonic():
                    continue
                try:
                    self.catch_up(name)
                    retry_at.pop(name, None)
                except Exception as e:
                    # The failed batch rolled back with its position: nothing half-applied.
                    # Keep the error visible (health, status) and retry this projection after
                    # a pause; the other projections go on catching up meanwhile.
                    self.last_error = e
                    retry_at[name] = time.monotonic() + 1.0
                    log.exception("projection %s: batch failed; will retry", name)
            if not retry_at:
                self.last_error = None
