"""Operational tables that are not read models: idempotency records and rate-limit windows."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any
from uuid import UUID

import orjson
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from application.ports import SecretBox

CREATE_STATEMENTS = [
    """CREATE UNLOGGED TABLE IF NOT EXISTS hostplane_rate_limit (
        subject text NOT NULL, window_start timestamptz NOT NULL, count integer NOT NULL,
        PRIMARY KEY (subject, window_start))""",
    """CREATE TABLE IF NOT EXISTS hostplane_idempotency (
        scope text NOT NULL, key text NOT NULL, request_hash text NOT NULL,
        status integer, wrapped_key bytea, body bytea,
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (scope, key))""",
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


PRUNE_RATE = "DELETE FROM hostplane_rate_limit WHERE window_start < %s"
CLAIM = """
INSERT INTO hostplane_idempotency (scope, key, request_hash) VALUES (%s, %s, %s)
ON CONFLICT DO NOTHING RETURNING scope"""
LOOKUP = "SELECT request_hash, status, wrapped_key, body FROM hostplane_idempotency WHERE scope = %s AND key = %s"
COMPLETE = """
UPDATE hostplane_idempotency SET status = %s, wrapped_key = %s, body = %s
WHERE scope = %s AND key = %s"""
FORGET = "DELETE FROM hostplane_idempotency WHERE scope = %s AND key = %s"
PRUNE_IDEMPOTENCY = "DELETE FROM hostplane_idempotency WHERE created_at < %s"

IDEMPOTENCY_TTL = timedelta(hours=24)


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

    @cached_property
    def _hit_and_version(self) -> str:
        return HIT_AND_VERSION.format(
            hit=HIT, events=self.events_table, current_head=self.current_head
        )

    def _retry_after(self, count: int, window: datetime, now: datetime) -> int | None:
        if count <= self.per_minute:
            return None
        return max(1, math.ceil((window + timedelta(minutes=1) - now).total_seconds()))

    def prune(self, now: datetime | None = None) -> None:
        now = now or datetime.now(UTC)
        with self.pool.connection() as conn:
            conn.execute(PRUNE_RATE, (now - timedelta(minutes=2),))


class IdempotencyConflictError(Exception):
    """The key was used with another body, or its first request is still running."""


@dataclass
class IdempotencyStore:
    """Remembers the first response to a creating POST per (caller, Idempotency-Key).

    Responses may contain a once-shown secret, so they are stored encrypted and kept 24 h.
    """

    pool: ConnectionPool[Any]
    secret_box: SecretBox

    def run(
        self, scope: str, key: str, request: Any, create: Callable[[], tuple[int, Any]]
    ) -> tuple[int, Any]:
        request_hash = hashlib.sha256(
            orjson.dumps(request, option=orjson.OPT_SORT_KEYS)
        ).hexdigest()
        with self.pool.connection() as conn:
            claimed = conn.execute(CLAIM, (scope, key, request_hash)).fetchone()
            if not claimed:
                row = conn.execute(LOOKUP, (scope, key)).fetchone()
        if not claimed:
            if row is None:  # pruned in between: treat as new
                return self.run(scope, key, request, create)
            if row["request_hash"] != request_hash:
                raise IdempotencyConflictError(
                    "this Idempotency-Key was already used with a different request"
                )
            if row["status"] is None:
                raise IdempotencyConflictError("a request with this Idempotency-Key is in progress")
            body = self.secret_box.decrypt(bytes(row["wrapped_key"]), bytes(row["body"]))
            return row["status"], orjson.loads(body)
        try:
            status, body = create()
        except BaseException:
            with self.pool.connection() as conn:
                conn.execute(FORGET, (scope, key))
            raise
        wrapped = self.secret_box.new_wrapped_data_key()
        sealed = self.secret_box.encrypt(wrapped, orjson.dumps(body).decode())
        with self.pool.connection() as conn:
            conn.execute(COMPLETE, (status, wrapped, sealed, scope, key))
        return status, body

    def prune(self, now: datetime | None = None) -> None:
        now = now or datetime.now(UTC)
        with self.pool.connection() as conn:
            conn.execute(PRUNE_IDEMPOTENCY, (now - IDEMPOTENCY_TTL,))
