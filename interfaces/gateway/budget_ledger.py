"""Money leases in PostgreSQL: what every serving process holds against a budget or a balance.

A *subject* is one budget in one period (``budget:<id>:<period start>``) or one tenant's
prepaid balance (``credits:<tenant id>``). Its money is, at any moment, in exactly one of:

- the *stored* spend: the usage read model (and GPU time), up to its tracking position ``T``;
- *settled* rows: the cost of a gateway request whose usage record was written at a
  notification id above ``T`` (the read model has not counted it yet). A row at or below ``T``
  is counted by the read model and no longer here (pruned);
- *leases*: per serving process, the worst cases of its requests in flight and the room it may
  still give to requests without asking (``amount``).

``remaining = limit - stored - settled above T - leases``, read in one statement (one snapshot),
under a transaction-level advisory lock on the subject so that two processes never grant the
same money. A settlement moves a request's actual cost from its process's lease to a settled
row in one statement. Nothing is counted twice or not at all while the read model catches up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple
from uuid import UUID

from psycopg_pool import ConnectionPool

from projections.readmodels import costs, usage

ZERO = Decimal(0)

CREATE_STATEMENTS = [
    # Unlogged like the rate-limit windows: after a database crash the leases of requests in
    # flight and the costs settled in the last second are forgotten, nothing else.
    """CREATE UNLOGGED TABLE IF NOT EXISTS hostplane_budget_leases (
        subject text NOT NULL, holder uuid NOT NULL, amount numeric NOT NULL,
        expires_at timestamptz NOT NULL, PRIMARY KEY (subject, holder))""",
    """CREATE UNLOGGED TABLE IF NOT EXISTS hostplane_budget_settled (
        subject text NOT NULL, position bigint NOT NULL, amount numeric NOT NULL)""",
    """CREATE INDEX IF NOT EXISTS hostplane_budget_settled_subject
        ON hostplane_budget_settled (subject, position)""",
]
LOCK = "SELECT pg_advisory_xact_lock(hashtext(%s))"
# The stored spend and the read model's position, the settled costs it has not counted yet and
# the other processes' leases: one statement, so one snapshot.
STATE = """
SELECT (SELECT coalesce(sum(cost), 0) FROM {usage}.{table} WHERE {where}) AS stored,
       t.position,
       (SELECT coalesce(sum(amount), 0) FROM hostplane_budget_settled
         WHERE subject = %(subject)s AND position > t.position) AS settled,
       (SELECT coalesce(sum(amount), 0) FROM hostplane_budget_leases
         WHERE subject = %(subject)s AND holder <> %(holder)s AND expires_at > now()) AS leased
FROM {usage}.tracking t"""
HOLD = """
WITH counted AS (
    DELETE FROM hostplane_budget_settled WHERE subject = %(subject)s AND position <= %(position)s
), expired AS (
    DELETE FROM hostplane_budget_leases
    WHERE subject = %(subject)s AND holder <> %(holder)s AND expires_at <= now()
)
INSERT INTO hostplane_budget_leases (subject, holder, amount, expires_at)
VALUES (%(subject)s, %(holder)s, %(amount)s, now() + %(expiry)s)
ON CONFLICT (subject, holder) DO UPDATE
    SET amount = EXCLUDED.amount, expires_at = EXCLUDED.expires_at"""
RELEASE = """
UPDATE hostplane_budget_leases SET amount = %(amount)s, expires_at = now() + %(expiry)s
WHERE subject = %(subject)s AND holder = %(holder)s"""
INSERT_SETTLED = """
INSERT INTO hostplane_budget_settled (subject, position, amount)
SELECT %(subject)s, p, a FROM unnest(%(positions)s::bigint[], %(amounts)s::numeric[]) AS u(p, a)"""
SETTLE = f"WITH settled AS ({INSERT_SETTLED}){RELEASE}"
PRUNE_LEASES = "DELETE FROM hostplane_budget_leases WHERE expires_at <= now()"
PRUNE_SETTLED = f"""
DELETE FROM hostplane_budget_settled
WHERE position <= (SELECT position FROM {usage.SCHEMA}.tracking)"""


@dataclass(frozen=True)
class Scope:
    """Whose spend a subject limits: a key's token cost, or a tenant's token and GPU cost, in
    ``[start, end)`` (``start`` None: all time)."""

    tenant_id: UUID
    key_id: UUID | None
    start: datetime | None
    end: datetime | None
    credits: bool = False  # the limit is the tenant's credits (read with the spend)


class Settled(NamedTuple):
    """The actual cost of one request, and the notification id its usage was written at."""

    cost: Decimal
    position: int


@dataclass(frozen=True)
class Lease:
    """What a process holds after asking: ``amount`` in all (its requests in flight included)."""

    amount: Decimal
    limit: Decimal
    remaining: Decimal  # for everyone but this process, when it asked


def spend_where(scope: Scope) -> tuple[str, dict[str, Any]]:
    """The usage buckets of a scope (as ``projections.engine.base.bucket_where``, named)."""
    where, params = ["tenant_id = %(tenant_id)s"], {"tenant_id": scope.tenant_id}
    if scope.key_id is not None:
        where.append("key_id = %(key_id)s")
        params["key_id"] = scope.key_id
    if scope.start is not None:
        where.append("at >= %(start)s")
        params["start"] = scope.start
    if scope.end is not None:
        where.append("at < %(end)s")
        params["end"] = scope.end
    return " AND ".join(where), params


class BudgetLedger:
    """The leases of one serving process (``holder``), on the process's connection pool."""

    def __init__(self, pool: ConnectionPool[Any], holder: UUID, expiry_seconds: float) -> None:
        self.pool = pool
        self.holder = holder
        self.expiry = timedelta(seconds=expiry_seconds)
        self._created = False

    def create_tables(self) -> None:
        if self._created:
            return
        with self.pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('hostplane-schema'))")
            for statement in CREATE_STATEMENTS:
                conn.execute(statement)
        self._created = True

    def hold(
        self,
        subject: str,
        scope: Scope,
        limit: Decimal | None,
        in_flight: Decimal,
        need: Decimal,
        want: Decimal,
        now: datetime,
        settled: Sequence[Settled] = (),
    ) -> Lease:
        """Hold ``in_flight`` and, if at least ``need`` more is left, up to ``want`` more.

        ``settled``: the costs of this process's requests settled since it last wrote (they
        left its lease), written first.

        ``limit`` None: the tenant's credits are the limit. The lease never gives less than
        ``need`` (then nothing more is held than ``in_flight``); it never holds money that is
        not left, except what is already in flight.
        """
        self.create_tables()
        where, params = spend_where(scope)
        sql = STATE.format(
            usage=usage.SCHEMA, table=usage.table_for(scope.start, scope.end), where=where
        )
        with self.pool.connection() as conn, conn.transaction():
            curs = conn.cursor()
            curs.execute(LOCK, (subject,))
            if settled:
                curs.execute(INSERT_SETTLED, self._settled(subject, settled))
            row = curs.execute(
                sql, {**params, "subject": subject, "holder": self.holder}
            ).fetchone()
            assert row is not None
            spent = row["stored"]
            if scope.key_id is None:
                gpu = costs.gpu_rows(curs, scope.tenant_id, scope.start, scope.end, now)
                spent += sum((g["cost"] for g in gpu), ZERO)
            if limit is None:
                limit = costs.credits_of(curs, scope.tenant_id)
            remaining = limit - spent - row["settled"] - row["leased"]
            room = remaining - in_flight
            grant = min(want, room) if room >= need else ZERO
            amount = in_flight + grant
            curs.execute(
                HOLD,
                {
                    "subject": subject,
                    "holder": self.holder,
                    "amount": amount,
                    "position": row["position"],
                    "expiry": self.expiry,
                },
            )
        return Lease(amount=amount, limit=limit, remaining=remaining)

    def settle(self, subject: str, amount: Decimal, settled: Sequence[Settled]) -> None:
        """Costs of requests settled (``settled``) leave the lease, now ``amount``, for settled
        rows, in one statement."""
        self.create_tables()
        with self.pool.connection() as conn:
            conn.execute(
                SETTLE if settled else RELEASE,
                {
                    **self._settled(subject, settled),
                    "holder": self.holder,
                    "amount": amount,
                    "expiry": self.expiry,
                },
            )

    @staticmethod
    def _settled(subject: str, settled: Sequence[Settled]) -> dict[str, Any]:
        return {
            "subject": subject,
            "positions": [s.position for s in settled],
            "amounts": [s.cost for s in settled],
        }

    def prune(self) -> None:
        """Forget the leases of processes gone, and settled costs the read model has counted."""
        self.create_tables()
        with self.pool.connection() as conn:
            conn.execute(PRUNE_LEASES)
            conn.execute(PRUNE_SETTLED)
