"""Operational tables that are not read models: idempotency records and rate-limit windows.

Idempotency survives a crash of the process that ran the first request: see ``IdempotencyStore``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any
from uuid import UUID, uuid4

import orjson
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from application.idempotency import Claim, Created, current_claim
from application.ports import SecretBox

IDEMPOTENCY_TABLE = "hostplane_idempotency"

CREATE_STATEMENTS = [
    """CREATE UNLOGGED TABLE IF NOT EXISTS hostplane_rate_limit (
        subject text NOT NULL, window_start timestamptz NOT NULL, count integer NOT NULL,
        PRIMARY KEY (subject, window_start))""",
    """CREATE TABLE IF NOT EXISTS hostplane_idempotency (
        scope text NOT NULL, key text NOT NULL, request_hash text NOT NULL,
        status integer, wrapped_key bytea, body bytea,
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (scope, key))""",
    # The claim of the request running (its token, and since when: the lease), and what its
    # saves created, written by the event store in the saves' own statement (eventstore.py).
    """ALTER TABLE hostplane_idempotency
        ADD COLUMN IF NOT EXISTS claim_token uuid,
        ADD COLUMN IF NOT EXISTS claimed_at timestamptz,
        ADD COLUMN IF NOT EXISTS created_ids uuid[],
        ADD COLUMN IF NOT EXISTS secret_key bytea,
        ADD COLUMN IF NOT EXISTS secret bytea""",
]

HIT = """
INSERT INTO hostplane_rate_limit (subject, window_start, count) VALUES (%s, %s, 1)
ON CONFLICT (subject, window_start) DO UPDATE SET count = hostplane_rate_limit.count + 1
RETURNING count"""
# The same, and in the same round trip the latest stored version of one aggregate (a key)
# and the log's head if every read model has reached it (``EventSource.current_head_sql``).
HIT_AND_VERSION = """
WITH hit AS ({hit})
SELECT hit.count, (SELECT max(originator_version) FROM {events} WHERE originator_id = %s)
    AS version, ({current_head}) AS current_head
FROM hit"""

# The version alone: the gateway, whose request limits are the keys' own (ledger leases).
VERSION = (
    "SELECT (SELECT max(originator_version) FROM {events} WHERE originator_id = %s) AS version"
)
# Several subjects counted at once (in a fixed order: two requests lock rows alike).
HIT_EACH = """
INSERT INTO hostplane_rate_limit (subject, window_start, count)
SELECT subject, %s, 1 FROM unnest(%s::text[]) AS subject ORDER BY subject
ON CONFLICT (subject, window_start) DO UPDATE SET count = hostplane_rate_limit.count + 1
RETURNING subject, count"""


PRUNE_RATE = "DELETE FROM hostplane_rate_limit WHERE window_start < %s"
CLAIM = """
INSERT INTO hostplane_idempotency (scope, key, request_hash, claim_token, claimed_at)
VALUES (%(scope)s, %(key)s, %(hash)s, %(token)s, now())
ON CONFLICT DO NOTHING RETURNING scope"""
LOOKUP = """
SELECT request_hash, status, wrapped_key, body, created_ids, secret_key, secret,
    claimed_at IS NULL OR claimed_at <= now() - %(lease)s AS expired,
    greatest(1, ceil(extract(epoch FROM claimed_at + %(lease)s - now())))::int AS retry_after
FROM hostplane_idempotency WHERE scope = %(scope)s AND key = %(key)s"""
# A claim whose lease ran out with nothing saved passes to the retry (a new token). Row locks
# order this against the claimant's save, which marks ``created_ids``: one of the two wins.
TAKE_OVER = """
UPDATE hostplane_idempotency SET claim_token = %(token)s, claimed_at = now()
WHERE scope = %(scope)s AND key = %(key)s AND request_hash = %(hash)s
    AND status IS NULL AND created_ids IS NULL
    AND (claimed_at IS NULL OR claimed_at <= now() - %(lease)s)
RETURNING scope"""
COMPLETE = """
UPDATE hostplane_idempotency SET status = %(status)s, wrapped_key = %(wrapped)s, body = %(body)s
WHERE scope = %(scope)s AND key = %(key)s AND claim_token = %(token)s"""
# A request that failed before saving anything frees its key for a corrected retry; one that
# failed after a save keeps it: the retry answers with what was created.
FORGET = """
DELETE FROM hostplane_idempotency
WHERE scope = %(scope)s AND key = %(key)s AND claim_token = %(token)s AND created_ids IS NULL"""
PRUNE_IDEMPOTENCY = "DELETE FROM hostplane_idempotency WHERE created_at < %s"

IDEMPOTENCY_TTL = timedelta(hours=24)
# How long a claim stands with nothing saved before a retry may take it over. A request that is
# merely slow past it loses nothing but its own save (refused, 409): see ``IdempotencyStore``.
IDEMPOTENCY_LEASE = timedelta(seconds=30)


def create_tables(pool: ConnectionPool[Any]) -> None:
    with pool.connection() as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('hostplane-schema'))")
        for statement in CREATE_STATEMENTS:
            conn.execute(statement)


@dataclass
class RateLimiter:
    """A fixed one-minute window per subject, counted in PostgreSQL so every process shares it."""

    pool: ConnectionPool[Any]  # for ``prune``
    per_minute: int
    events_table: str  # schema-qualified and quoted
    current_head: str  # ``EventSource.current_head_sql`` of the read models

    async def hit_and_version(
        self, apool: AsyncConnectionPool[Any], subject: str, aggregate_id: UUID | None
    ) -> tuple[int | None, int | None, int | None]:
        """Count one request (seconds to wait if over the limit, else ``None``); the aggregate's
        latest stored version (``None``: no such aggregate); and the log's head if every read
        model has reached it (else ``None``): one round trip, on the event loop's ``apool``.
        """
        now = datetime.now(UTC)
        window = now.replace(second=0, microsecond=0)
        async with apool.connection() as conn:
            cursor = await conn.execute(self._hit_and_version, (subject, window, aggregate_id))
            row = await cursor.fetchone()
        return self._retry_after(row["count"], window, now), row["version"], row["current_head"]

    async def version(self, apool: AsyncConnectionPool[Any], aggregate_id: UUID) -> int | None:
        """The aggregate's latest stored version (``None``: no such aggregate), counting nothing:
        a read, where ``hit_and_version`` writes (and waits for its commit to be flushed)."""
        async with apool.connection() as conn:
            cursor = await conn.execute(self._version, (aggregate_id,))
            row = await cursor.fetchone()
        return row["version"] if row else None

    @cached_property
    def _version(self) -> str:
        return VERSION.format(events=self.events_table)

    async def hit_each(self, apool: AsyncConnectionPool[Any], limits: dict[str, int]) -> int | None:
        """Count one request against each subject's own limit per minute (sign-in attempts per
        email and per IP); seconds to wait if any is over its limit, else ``None``."""
        now = datetime.now(UTC)
        window = now.replace(second=0, microsecond=0)
        async with apool.connection() as conn:
            cursor = await conn.execute(HIT_EACH, (window, sorted(limits)))
            rows = await cursor.fetchall()
        over = [self._wait(window, now) for row in rows if row["count"] > limits[row["subject"]]]
        return max(over, default=None)

    @cached_property
    def _hit_and_version(self) -> str:
        return HIT_AND_VERSION.format(
            hit=HIT, events=self.events_table, current_head=self.current_head
        )

    def _retry_after(self, count: int, window: datetime, now: datetime) -> int | None:
        if count <= self.per_minute:
            return None
        return self._wait(window, now)

    @staticmethod
    def _wait(window: datetime, now: datetime) -> int:
        return max(1, math.ceil((window + timedelta(minutes=1) - now).total_seconds()))

    def prune(self, now: datetime | None = None) -> None:
        now = now or datetime.now(UTC)
        with self.pool.connection() as conn:
            conn.execute(PRUNE_RATE, (now - timedelta(minutes=2),))


class IdempotencyConflictError(Exception):
    """The key was used with another body, or its first request is still running."""

    def __init__(self, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after  # seconds, for a request still running


Outcome = tuple[int, Any]  # (HTTP status, JSON body)


@dataclass
class IdempotencyStore:
    """Remembers the first response to a creating POST per (caller, Idempotency-Key).

    Responses may contain a once-shown secret, so they are stored encrypted and kept 24 h.

    Surviving a crash. The first request *claims* the key (a row with a fresh token and the
    time: its lease). Its command's saves go through ``BaseService.commit``, which sees the
    claim (``current_claim``) and has the event store mark the row in the same statement that
    stores the events: the ids of the aggregates created, and a once-shown secret sealed. Then
    the request stores its response. A retry finds one of:

    - a response: it is returned;
    - events saved but no response (the process died, or the command failed, after its save):
      ``recover`` answers from what was created, as it is now (the id, the resource as GET
      shows it, and the sealed secret). The saves and the mark are one transaction, so a
      resource never exists that the row doesn't name;
    - nothing saved, lease running: 409 with ``Retry-After`` (the first may still be running);
    - nothing saved, lease over: the retry takes the claim (a new token) and runs the command.

    The lease decides only *when* a retry may run, never whether two requests both create: the
    event store writes a save only while the claim still holds the request's own token, and a
    takeover can't happen once a save is marked (row locks order the two). A first request
    that is merely slower than the lease, and that a retry overtook, has its save refused
    (``ClaimLostError``, 409); the retry's result stands. The price of this (rather than
    watching the claimant's liveness, e.g. a session advisory lock per process) is that a
    crash with nothing saved blocks retries for up to the lease; 1 such crash in 9 in the
    fault run, and the answer says how long to wait.
    """

    pool: ConnectionPool[Any]
    secret_box: SecretBox
    lease: timedelta = IDEMPOTENCY_LEASE

    def run(
        self,
        scope: str,
        key: str,
        request: Any,
        create: Callable[[], Outcome],
        recover: Callable[[Created], Outcome],
    ) -> Outcome:
        request_hash = hashlib.sha256(
            orjson.dumps(request, option=orjson.OPT_SORT_KEYS)
        ).hexdigest()
        claim = Claim(scope, key, uuid4())
        args = {"scope": scope, "key": key, "hash": request_hash, "token": claim.token}
        with self.pool.connection() as conn:
            if conn.execute(CLAIM, args).fetchone():
                row = None
            else:
                row = conn.execute(LOOKUP, {**args, "lease": self.lease}).fetchone()
                if row is None:  # pruned in between: treat as new
                    return self.run(scope, key, request, create, recover)
        if row is not None:
            if row["request_hash"] != request_hash:
                raise IdempotencyConflictError(
                    "this Idempotency-Key was already used with a different request"
                )
            if row["status"] is not None:
                body = self.secret_box.decrypt(bytes(row["wrapped_key"]), bytes(row["body"]))
                return row["status"], orjson.loads(body)
            if row["created_ids"] is not None:
                return recover(self._created(row))
            if not row["expired"] or not self._take_over(args):
                raise IdempotencyConflictError(
                    "a request with this Idempotency-Key is in progress",
                    retry_after=row["retry_after"] or 1,
                )
        return self._first(claim, args, create)

    def _first(self, claim: Claim, args: dict[str, Any], create: Callable[[], Outcome]) -> Outcome:
        """Run the command under the claim, then store its response."""
        held = current_claim.set(claim)
        try:
            status, body = create()
        except BaseException:
            with self.pool.connection() as conn:
                conn.execute(FORGET, args)
            raise
        finally:
            current_claim.reset(held)
        wrapped = self.secret_box.new_wrapped_data_key()
        sealed = self.secret_box.encrypt(wrapped, orjson.dumps(body).decode())
        with self.pool.connection() as conn:
            conn.execute(COMPLETE, {**args, "status": status, "wrapped": wrapped, "body": sealed})
        return status, body

    def _take_over(self, args: dict[str, Any]) -> bool:
        with self.pool.connection() as conn:
            return conn.execute(TAKE_OVER, {**args, "lease": self.lease}).fetchone() is not None

    def _created(self, row: dict[str, Any]) -> Created:
        secret = None
        if row["secret"] is not None:
            secret = self.secret_box.decrypt(bytes(row["secret_key"]), bytes(row["secret"]))
        return Created(ids=list(row["created_ids"]), secret=secret)

    def prune(self, now: datetime | None = None) -> None:
        now = now or datetime.now(UTC)
        with self.pool.connection() as conn:
            conn.execute(PRUNE_IDEMPOTENCY, (now - IDEMPOTENCY_TTL,))
