"""The event store's recorder, extended to register usage request ids and to mark an
Idempotency-Key claim committed, in the same transaction as the events; and its factory, whose
pool fails fast in an outage and bounds each statement."""

from __future__ import annotations

import base64
import struct
import time
import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple
from uuid import UUID

import orjson
import psycopg
from eventsourcing.persistence import DatabaseError, InterfaceError, OperationalError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore, PostgresFactory
from eventsourcing.utils import Environment, EnvType, retry
from psycopg import pq
from psycopg.errors import error_from_result
from psycopg.sql import SQL, Identifier, Literal

from application.errors import PricesChangedError
from application.idempotency import ClaimLostError, ClaimWrite
from interfaces.db.pools import CheckedPool, connection_settings, with_options
from interfaces.db.stores import IDEMPOTENCY_TABLE
from interfaces.metrics import EVENT_WRITE_SECONDS

# Raised by the insert function when the request's Idempotency-Key claim is no longer its own.
CLAIM_LOST = "HPI01"
# Raised by the insert function when an aggregate a write was decided on (a usage batch: the
# models it was rated with) has a newer stored version than the one the write expected.
VERSION_MOVED = "HPV01"
# Every write NOTIFYs the store's channel with "<its last notification id> <write_tag>": a
# listener that cares about some aggregates only reads the log when a write holds theirs. A write
# that holds anything but the recorder's ``streamed`` aggregates (usage batches: hundreds a
# second under traffic) is notified on its ``changes_channel`` too: a listener that never cares
# about those is not woken by each of them.
CHANGES = "_changes"  # the changes channel's name: the store's channel's and this
MAX_TAG = 4000  # characters; a payload may hold 8,000 bytes
ANY_AGGREGATE = "*"
# The write's prepared statement, run through libpq itself (``Connection.pgconn``).
INSERT_NAME = b"hostplane_insert_events"
UNDEFINED_STATEMENT = b"26000"  # the server has no prepared statement of that name
# PostgreSQL's binary array format: dimensions, flags (no NULLs), element type; size and lower
# bound of the one dimension; then each element's length and bytes.
ARRAY_HEAD = struct.Struct("!iiIii")
LENGTH = struct.Struct("!i")
BIGINT = struct.Struct("!q")
UUID_OID, TEXT_OID, BIGINT_OID, BYTEA_OID = 2950, 25, 20, 17
# The insert's parameters: the events' four columns as binary arrays, then text.
INSERT_FORMATS = (1, 1, 1, 1, 0, 0, 0, 0, 0)


class HostplaneFactory(PostgresFactory):
    """The library's PostgreSQL factory, with a ``CheckedPool`` for the event store.

    Without it, a command in a database outage waited the pool's timeout once per attempt of
    the library's retry (ten), and after the outage the event store's idle connections failed
    their next query. The library builds its pool inside ``PostgresDatastore.__init__``, with
    no way to pass a pool class or connection options; it opens it at first use, so it is
    replaced here, with the same sizes and set-up, before any connection is made.
    ``POSTGRES_STATEMENT_TIMEOUT`` (seconds; unset or 0: none) bounds each statement.
    """

    POSTGRES_STATEMENT_TIMEOUT = "POSTGRES_STATEMENT_TIMEOUT"

    def __init__(self, env: Environment | EnvType | None) -> None:
        super().__init__(env)
        statement_timeout = float(self.env.get(self.POSTGRES_STATEMENT_TIMEOUT) or 0)
        library = self.datastore.pool
        self.datastore.pool = CheckedPool(
            connection_class=library.connection_class,
            kwargs=with_options(
                library.kwargs or {}, connection_settings(library.timeout, statement_timeout)
            ),
            min_size=library.min_size,
            max_size=library.max_size,
            open=False,
            configure=self.datastore.after_connect_func(),
            timeout=library.timeout,
            max_waiting=library.max_waiting,
            max_lifetime=library.max_lifetime,
            # Given up on after this, a failed connection is tried again at the next request,
            # not after a back-off grown long over a long outage.
            reconnect_timeout=library.timeout,
            name="event-store",
        )


class HostplaneRecorder(PostgresApplicationRecorder):
    """Adds the usage request-id registry, so each request id is stored once per tenant.

    Ids are inserted in the transaction that inserts the usage events: a duplicate makes the
    whole save fail (and the use case retries without it). No stored batch repeats an id.
    """

    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events"):
        super().__init__(datastore, events_table_name=events_table_name)
        self.changes_channel = self.channel_name + CHANGES
        # Aggregates (``aggregate_name``) whose writes come in streams: a write holding only
        # these is not notified on ``changes_channel`` (bootstrap says which they are).
        self.streamed: frozenset[str] = frozenset()
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
        # One write is one statement: this function registers the request ids, takes the lock
        # that orders all writes, NOTIFYs and inserts; its implicit transaction commits as it
        # returns. The lock is held only while the server runs it, never across a round trip
        # to this process (where a thread may first wait for the interpreter lock). Request
        # ids travel as one JSON document {tenant: [request id, ...]}: orjson writes it at C
        # speed, where psycopg would adapt two arrays element by element in Python. Events go
        # in binary: in text, psycopg quotes each event's state into the array literal with a
        # regex, ~2.5 ms per 1,000 usage records.
        function = Identifier(datastore.schema, f"{events_table_name}_insert")
        # The functions of earlier versions (without ``expected``, ``tag`` or ``changes``),
        # which the new one replaces.
        for earlier in ("jsonb, jsonb", "jsonb, jsonb, jsonb", "jsonb, jsonb, jsonb, text"):
            self.sql_create_statements.append(
                SQL("DROP FUNCTION IF EXISTS {}({}.{}[], {})").format(
                    function,
                    Identifier(datastore.schema),
                    Identifier(self.stored_event_type_name),
                    SQL(earlier),
                )
            )
        self.sql_create_statements.append(
            SQL(
                "CREATE OR REPLACE FUNCTION {function}("
                "events {schema}.{event_type}[], ids jsonb, claim jsonb, expected jsonb, tag text,"
                " changes boolean)"
                " RETURNS SETOF bigint LANGUAGE plpgsql AS $$"
                " DECLARE note text;"
                " BEGIN"
                "  IF ids IS NOT NULL THEN"
                "   INSERT INTO {ids_table} (tenant_id, request_id)"
                "    SELECT q.key::uuid, r.value"
                "    FROM jsonb_each(ids) q, jsonb_array_elements_text(q.value) r;"
                "  END IF;"
                "  IF claim IS NOT NULL THEN"
                "   UPDATE {idempotency} SET"
                "    created_ids = coalesce(created_ids, ARRAY[]::uuid[]) || ARRAY("
                "     SELECT e.originator_id FROM unnest(events) e WHERE e.originator_version = 1),"
                "    secret_key = coalesce(decode(claim->>'secret_key', 'base64'), secret_key),"
                "    secret = coalesce(decode(claim->>'secret', 'base64'), secret)"
                "   WHERE scope = claim->>'scope' AND key = claim->>'key'"
                "    AND claim_token = (claim->>'token')::uuid;"
                "   IF NOT FOUND THEN"
                "    RAISE EXCEPTION 'Idempotency-Key claim taken over' USING ERRCODE = '{lost}';"
                "   END IF;"
                "  END IF;"
                "  SET LOCAL lock_timeout = '{lock_timeout}s';"
                "  LOCK TABLE {schema}.{table} IN EXCLUSIVE MODE;"
                "  IF expected IS NOT NULL AND EXISTS ("
                "   SELECT 1 FROM jsonb_each_text(expected) x"
                "   WHERE (SELECT max(t.originator_version) FROM {schema}.{table} t"
                "    WHERE t.originator_id = x.key::uuid) IS DISTINCT FROM x.value::integer) THEN"
                "   RAISE EXCEPTION 'an aggregate changed' USING ERRCODE = '{moved}';"
                "  END IF;"
                "  RETURN QUERY INSERT INTO {schema}.{table}"
                "   (originator_id, originator_version, topic, state)"
                "   SELECT e.originator_id, e.originator_version, e.topic, e.state"
                "   FROM unnest(events) e RETURNING notification_id;"
                "  note := currval(pg_get_serial_sequence({qualified}, 'notification_id'))::text"
                "   || ' ' || tag;"
                "  PERFORM pg_notify({channel}, note);"
                "  IF changes THEN"
                "   PERFORM pg_notify({changes_channel}, note);"
                "  END IF;"
                " END $$"
            ).format(
                function=function,
                schema=Identifier(datastore.schema),
                table=Identifier(events_table_name),
                event_type=Identifier(self.stored_event_type_name),
                ids_table=self.request_ids_table,
                # Operational tables live in the event store's schema (hostplane sets none).
                idempotency=Identifier(datastore.schema, IDEMPOTENCY_TABLE),
                lost=SQL(CLAIM_LOST),
                moved=SQL(VERSION_MOVED),
                lock_timeout=SQL(str(int(datastore.lock_timeout))),
                channel=Literal(self.channel_name),
                changes_channel=Literal(self.changes_channel),
                qualified=Literal(f'"{datastore.schema or "public"}"."{events_table_name}"'),
            )
        )
        # The events go as four arrays, one per column, in PostgreSQL's binary array format,
        # which ``binary_array`` writes at C speed, and the statement is sent through libpq
        # itself: through a cursor, psycopg adapted each event as a composite value in Python,
        # and its query machinery cost ~220 µs of this process's CPU per write, ~45% of a lone
        # gateway usage write's (measured: 275–313 µs per insert against 56–62 µs this way).
        self.insert_statement = (
            SQL(
                "SELECT n FROM {}("
                "ARRAY(SELECT ROW(e.i, e.v, e.t, e.s)::{}.{}"
                " FROM unnest($1::{}[], $2::bigint[], $3::text[], $4::bytea[])"
                " WITH ORDINALITY e(i, v, t, s, o) ORDER BY e.o),"
                " $5::jsonb, $6::jsonb, $7::jsonb, $8::text, $9::boolean) n"
            )
            .format(
                function,
                Identifier(datastore.schema),
                Identifier(self.stored_event_type_name),
                SQL(datastore.originator_id_type),
            )
            .as_bytes(None)
        )
        self.id_oid = UUID_OID if datastore.originator_id_type == "uuid" else TEXT_OID
        # The connections this statement is prepared on (a connection the pool replaces
        # leaves; one whose statement is gone, a reset say, prepares it again).
        self._prepared: weakref.WeakSet[psycopg.Connection[Any]] = weakref.WeakSet()
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
        """The library's write (request ids, table lock, NOTIFY, insert) as one statement.

        The library sends these statements one by one and waits for the insert's result before
        it sends COMMIT, so the lock that orders all writes would be held across round trips
        to this process: under 32 key-creating clients the lock's holder sat idle in its
        transaction most of the time while the other writers queued. A failing part (a version
        or request-id conflict) fails the statement, and its transaction stores nothing.

        A request holding an Idempotency-Key claim (``idempotency_claim``) marks it committed
        in the same statement, naming the aggregates created; a claim taken over by a retry
        (the lease ran out) refuses the save, so only one of the two ever writes.

        ``expected_versions`` ({aggregate id: version}) are checked under the write lock: if
        one of those aggregates has moved on (a usage batch rated with a model's prices that
        changed meanwhile), nothing is stored (``PricesChangedError``). This replaces a round
        trip that read the versions before every write.
        """
        if not stored_events:
            return None
        params = self.insert_params(stored_events, **kwargs)
        started = time.perf_counter()
        try:
            with self.datastore.get_connection() as conn:
                written = self._insert(conn, params)
            EVENT_WRITE_SECONDS.observe(time.perf_counter() - started)
            return written
        except DatabaseError as e:
            sqlstate = getattr(e.__cause__, "sqlstate", None)
            if sqlstate == CLAIM_LOST:
                raise ClaimLostError(
                    "a retry with this Idempotency-Key took over while this request ran;"
                    " the retry's result stands"
                ) from None
            if sqlstate == VERSION_MOVED:
                raise PricesChangedError("a model's prices changed while rating") from None
            raise

    def insert_params(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> tuple[bytes | None, ...]:
        """The insert statement's parameters (in ``INSERT_FORMATS``) for these events and the
        keyword arguments of ``insert_events``: for ``insert_events``, and for a caller that
        runs the statement itself (``LoopWriter``, the gateway's meter)."""
        ids: Mapping[UUID, Sequence[str]] = kwargs.get("usage_request_ids") or {}
        claim: ClaimWrite | None = kwargs.get("idempotency_claim")
        expected: Mapping[UUID, int] = kwargs.get("expected_versions") or {}
        ids_of = (lambda i: i.bytes) if self.id_oid == UUID_OID else (lambda i: str(i).encode())
        aggregates = {aggregate_of(e.topic) for e in stored_events}
        return (
            binary_array(self.id_oid, [ids_of(e.originator_id) for e in stored_events]),
            binary_array(BIGINT_OID, [BIGINT.pack(e.originator_version) for e in stored_events]),
            binary_array(TEXT_OID, [e.topic.encode() for e in stored_events]),
            binary_array(BYTEA_OID, [e.state for e in stored_events]),
            as_json(ids).encode() if ids else None,
            claim_json(claim).encode() if claim else None,
            orjson.dumps({str(k): v for k, v in expected.items()}) if expected else None,
            write_tag(aggregates).encode(),
            b"f" if aggregates <= self.streamed else b"t",
        )

    def _insert(self, conn: psycopg.Connection[Any], params: Sequence[bytes | None]) -> list[int]:
        """Run the insert statement on ``conn`` (preparing it there first if need be); its
        notification ids. A failure raises as psycopg would have raised it."""
        pgconn = conn.pgconn
        for attempt in range(2):
            if conn not in self._prepared:
                check(pgconn, pgconn.prepare(INSERT_NAME, self.insert_statement))
                self._prepared.add(conn)
            result = pgconn.exec_prepared(INSERT_NAME, params, INSERT_FORMATS)
            try:
                gone = result.error_field(pq.DiagnosticField.SQLSTATE) == UNDEFINED_STATEMENT
                if gone and attempt == 0:
                    self._prepared.discard(conn)
                    continue
                check(pgconn, result)
                return [int(result.get_value(row, 0) or 0) for row in range(result.ntuples)]
            finally:
                result.clear()
        raise AssertionError("unreachable")  # pragma: no cover

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


def binary_array(oid: int, items: Sequence[bytes]) -> bytes:
    """A one-dimensional array of elements of type ``oid`` (each already in that type's binary
    form), in PostgreSQL's binary array format."""
    parts = [ARRAY_HEAD.pack(1, 0, oid, len(items), 1)]
    for item in items:
        parts.append(LENGTH.pack(len(item)))
        parts.append(item)
    return b"".join(parts)


def check(pgconn: pq.abc.PGconn, result: pq.abc.PGresult) -> None:
    """Raise, as psycopg would, for a result that failed: ``OperationalError`` when the
    connection is lost (the pool then replaces it, and the write is retried), else the
    server's error by its SQLSTATE (a unique violation is an ``IntegrityError``, say)."""
    if result.status in (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK):
        return
    if pgconn.status == pq.ConnStatus.BAD:
        message = pgconn.get_error_message() or "the connection to the server was lost"
        raise psycopg.OperationalError(message)
    raise error_from_result(result)


def write_tag(aggregates: Iterable[str]) -> str:
    """The aggregates a write holds events of (``aggregate_of`` its events' topics), as its
    notification says them: comma-separated; ``*`` (any) when that is too long for a
    notification's payload."""
    tag = ",".join(sorted(set(aggregates)))
    return tag if len(tag) <= MAX_TAG else ANY_AGGREGATE


def aggregate_of(topic: str) -> str:
    """``domain.apikey:ApiKey.Created`` → ``domain.apikey:ApiKey``."""
    module, _, name = topic.partition(":")
    return f"{module}:{name.split('.', 1)[0]}"


def aggregate_name(cls: type) -> str:
    """An aggregate class as a write's notification names it (``domain.apikey:ApiKey``)."""
    return f"{cls.__module__}:{cls.__qualname__}"


class WriteNotice(NamedTuple):
    """A write's notification: its last notification id and the aggregates it holds events of
    (``ANY_AGGREGATE`` among them: any)."""

    last_id: int
    aggregates: frozenset[str]

    def may_hold(self, names: frozenset[str]) -> bool:
        """Whether the write may hold an event of one of these aggregates."""
        return ANY_AGGREGATE in self.aggregates or not self.aggregates.isdisjoint(names)

    def holds_only(self, names: frozenset[str]) -> bool:
        """Whether every event of the write is of one of these aggregates."""
        return ANY_AGGREGATE not in self.aggregates and self.aggregates <= names


def parse_notification(payload: str) -> WriteNotice | None:
    """A write's notification, or ``None`` for a payload of another form (then anything may
    have been written)."""
    head, _, tag = payload.partition(" ")
    if not head.isdigit():
        return None
    return WriteNotice(int(head), frozenset(tag.split(",")))


def as_json(ids: Mapping[UUID, Sequence[str]]) -> str:
    """``{"tenant id": ["request id", ...]}`` as JSON text."""
    return orjson.dumps(ids, option=orjson.OPT_NON_STR_KEYS).decode()


def claim_json(write: ClaimWrite) -> str:
    """An Idempotency-Key claim and its sealed secret as the insert function's JSON argument."""
    claim = write.claim
    doc: dict[str, str] = {"scope": claim.scope, "key": claim.key, "token": str(claim.token)}
    if write.secret is not None:
        doc["secret_key"] = base64.b64encode(write.secret[0]).decode()
        doc["secret"] = base64.b64encode(write.secret[1]).decode()
    return orjson.dumps(doc).decode()
