"""The library's own ``ProjectionRunner`` (one transaction per event), over the same events.

The rebuild figure is compared with it: the same log, decoded by the same application, each
event written as one row plus its tracking position, committed one event at a time.
"""

from __future__ import annotations

import time
from typing import Any

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.projection import Projection, ProjectionRunner
from psycopg.conninfo import conninfo_to_dict
from psycopg.sql import SQL, Identifier

from application.store import EventStore
from bench.server import Server
from interfaces.db.database import Database


class EntriesView(PostgresTrackingRecorder):
    """One row per event (position, topic, originator), written with its tracking position."""

    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        table = SQL("{}.{}").format(Identifier(datastore.schema), Identifier("baseline_entries"))
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {} (position bigint PRIMARY KEY, topic text NOT NULL,"
                " originator_id uuid NOT NULL, originator_version int NOT NULL)"
            ).format(table)
        )
        self.insert_entry = SQL("INSERT INTO {} VALUES (%s, %s, %s, %s)").format(table)

    def record(self, event: Any, tracking: Tracking) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                self.insert_entry,
                (
                    tracking.notification_id,
                    type(event).__qualname__,
                    event.originator_id,
                    event.originator_version,
                ),
            )
            self._insert_tracking(curs, tracking)


class EntriesProjection(Projection[EntriesView]):
    name = "baseline"

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.view.record(domain_event, tracking)


def library_runner_rate(server: Server, cap: int) -> tuple[float, int]:
    """Events/s of the library's runner over the first ``cap`` events of the log."""
    with server.connect() as conn:
        row = conn.execute(
            "SELECT max(notification_id), count(*) FROM (SELECT notification_id"
            " FROM public.hostplane_events ORDER BY notification_id LIMIT %s) t",
            (cap,),
        ).fetchone()
    last, events = row[0], row[1]
    env = Database(server.conninfo).eventsourcing_env(pool_size=2)
    env = {**env, "POSTGRES_HOST": str(conninfo_to_dict(server.conninfo).get("host"))}
    t0 = time.perf_counter()
    with ProjectionRunner(
        application_class=EventStore,
        projection_class=EntriesProjection,
        view_class=EntriesView,
        env=env,
    ) as runner:
        runner.wait(last, timeout=3600)
        seconds = time.perf_counter() - t0
    return events / seconds, events
