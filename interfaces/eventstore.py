"""The event store's recorder, extended to register usage request ids in the same transaction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.persistence import InterfaceError, OperationalError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.utils import retry
from psycopg import Cursor
from psycopg.pq import TransactionStatus
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier


class HostplaneRecorder(PostgresApplicationRecorder):
    """Adds the usage request-id registry, so each request id is stored once per tenant.

    Ids are inserted in the transaction that inserts the usage events: a duplicate makes the
    whole save fail (and the use case retries without it). No stored batch repeats an id.
    """

    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events"):
        super().__init__(datastore, events_table_name=events_table_name)
        # The library's statement, with the events sent in binary (%b): in text, psycopg quotes
        # each event's state (hex of its bytes) into the array literal with a regex, ~2.5 ms
        # per 1,000 usage records.
        self.insert_events_statement = SQL(
            "INSERT INTO {schema}.{table} AS t (originator_id, originator_version, topic, state)"
            " SELECT originator_id, originator_version, topic, state"
            " FROM unnest(%b::{schema}.{stored_event_type}[]) RETURNING notification_id"
        ).format(
            schema=Identifier(datastore.schema),
            table=Identifier(events_table_name),
            stored_event_type=Identifier(self.stored_event_type_name),
        )
        self.request_ids_table = SQL("{}.{}").format(
            Identifier(datastore.schema), Identifier(f"{events_table_name}_usage_ids")
        )
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                " tenant_id uuid NOT NULL, request_id text NOT NULL,"
                " PRIMARY KEY (tenant_id, request_id))"
            ).format(self.request_ids_table)
        )
        # Ids travel as one JSON document {tenant: [request id, ...]}: orjson writes it at C
        # speed, where psycopg would adapt two arrays element by element in Python.
        self.insert_ids_statement = SQL(
            "INSERT INTO {} (tenant_id, request_id) SELECT q.key::uuid, r.value"
            " FROM jsonb_each(%s::jsonb) q, jsonb_array_elements_text(q.value) r"
        ).format(self.request_ids_table)
        # One index probe per id (LATERAL ... LIMIT 1): the planner can't estimate rows from
        # jsonb functions and would otherwise hash-join against a scan of the whole table.
        self.seen_ids_statement = SQL(
            "SELECT q.key::uuid AS tenant_id, r.value AS request_id"
            " FROM jsonb_each(%s::jsonb) q, jsonb_array_elements_text(q.value) r,"
            " LATERAL (SELECT 1 FROM {} t WHERE t.tenant_id = q.key::uuid"
            "  AND t.request_id = r.value LIMIT 1) found"
        ).format(self.request_ids_table)
        self.versions_statement = SQL(
            "SELECT originator_id, max(originator_version) AS version FROM {}.{}"
            " WHERE originator_id = ANY(%s::uuid[]) GROUP BY originator_id"
        ).format(Identifier(datastore.schema), Identifier(events_table_name))

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """The library's write (request ids, table lock, NOTIFY, insert), sent in one round trip.

        The library waits for the insert's result before it sends COMMIT, so the table lock that
        orders all writes is held across a round trip to this process, which under load must
        first get the interpreter lock back. Here BEGIN through COMMIT go out in one pipeline
        and are synced once; the lock is held only while the server runs them. (psycopg's
        ``transaction()`` can't be used for that: in a pipeline it syncs before COMMIT.) A failed
        statement (a version or request-id conflict) makes the server skip the rest, COMMIT
        included; the transaction is rolled back and the error raised here.
        """
        if not stored_events:
            return None
        with self.datastore.get_connection() as conn, conn.cursor() as inserted:
            try:
                with conn.pipeline():
                    conn.execute("BEGIN")
                    with conn.cursor() as curs:
                        self._insert_events(curs, stored_events, **kwargs)
                    self._insert_stored_events(inserted, stored_events, **kwargs)
                    conn.execute("COMMIT")
            except BaseException:
                if conn.info.transaction_status != TransactionStatus.IDLE:
                    conn.rollback()
                raise
            return [row["notification_id"] for row in inserted.fetchall()]

    def _insert_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        ids: Mapping[UUID, Sequence[str]] = kwargs.get("usage_request_ids") or {}
        if ids:
            curs.execute(self.insert_ids_statement, (as_json(ids),))
        super()._insert_events(curs, stored_events, **kwargs)

    def stored_versions(self, aggregate_ids: Sequence[UUID]) -> dict[UUID, int]:
        """The latest stored version of each of these aggregates that exists."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self.versions_statement, (list(aggregate_ids),))
            return {r["originator_id"]: r["version"] for r in curs.fetchall()}

    def seen(self, ids: Mapping[UUID, Sequence[str]]) -> dict[UUID, set[str]]:
        """Which of these request ids (per tenant) are already recorded."""
        if not ids:
            return {}
        found: dict[UUID, set[str]] = {}
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self.seen_ids_statement, (as_json(ids),))
            for r in curs.fetchall():
                found.setdefault(r["tenant_id"], set()).add(r["request_id"])
        return found


def as_json(ids: Mapping[UUID, Sequence[str]]) -> str:
    """``{"tenant id": ["request id", ...]}`` as JSON text."""
    return orjson.dumps(ids, option=orjson.OPT_NON_STR_KEYS).decode()
