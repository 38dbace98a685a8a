"""Reconciliation: the bill re-derived from the events against what the billing read models say.

Both sides are read in one repeatable-read snapshot. The usage and costs read models may stand
at different positions of the log: each is compared with the events it has seen (usage events
up to its position, instance and credit events up to the other's).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.utils import get_topic
from psycopg import Connection

from domain.tenant import Tenant
from domain.timewindow import floor_day, period_window
from domain.usage import UsageBatch
from projections.engine.source import EventSource
from projections.readmodels import costs, usage
from projections.readmodels.audit import SCHEMA as AUDIT
from projections.reports import billing
from projections.reports.event_billing import EventBilling, Sums
from projections.reports.export import BEGIN_SNAPSHOT, SnapshotBehindError, stream_events

COMPARED = ("requests", "prompt_tokens", "completion_tokens", "token_cost", "gpu_cost")
SQL_POSITIONS = (
    f"SELECT (SELECT position FROM {usage.SCHEMA}.tracking) AS usage,"
    f" (SELECT position FROM {costs.SCHEMA}.tracking) AS costs,"
    f" (SELECT position FROM {AUDIT}.tracking) AS audit"
)


@dataclass(frozen=True)
class Difference:
    tenant_id: UUID
    period: str  # a day (YYYY-MM-DD), or "all time" for credits
    field: str
    from_events: str
    read_model: str

    def __str__(self) -> str:
        return (
            f"tenant {self.tenant_id} {self.period} {self.field}:"
            f" events say {self.from_events}, read model says {self.read_model}"
        )


def tenant_ids(conn: Connection[Any], source: EventSource) -> list[UUID]:
    """Every tenant ever registered, in registration order."""
    rows = conn.execute(
        f"SELECT originator_id FROM {source.table} WHERE topic = %s ORDER BY notification_id",
        (get_topic(Tenant.Registered),),
    ).fetchall()
    return [r["originator_id"] for r in rows]


def reconcile_tenant(
    conn: Connection[Any], source: EventSource, tenant_id: UUID, now: datetime
) -> list[Difference]:
    """Each day's bill and the credits, from the events and from the read models."""
    with conn.transaction():
        conn.execute(BEGIN_SNAPSHOT)
        pos = conn.execute(SQL_POSITIONS).fetchone()
        if pos["audit"] < max(pos["usage"], pos["costs"]):
            raise SnapshotBehindError("the audit read model is behind the billing read models")
        bill = EventBilling()
        for position, _, event in stream_events(
            conn, source, tenant_id, max(pos["usage"], pos["costs"])
        ):
            seen_by = pos["usage"] if isinstance(event, UsageBatch.Recorded) else pos["costs"]
            if position <= seen_by:
                bill.apply(event)
        bill.close(now)
        with conn.cursor() as curs:
            read_days = read_model_days(curs, tenant_id, months_of(curs, tenant_id, bill, now), now)
            read_credits = costs.credits_of(curs, tenant_id)
    return list(compare(tenant_id, bill, read_days, read_credits))


def months_of(curs: Any, tenant_id: UUID, bill: EventBilling, now: datetime) -> set[datetime]:
    """The first day of every month with activity on either side."""
    days = set(bill.days)
    days |= {r["at"] for r in usage.totals(curs, tenant_id, [], None, None, interval="day")}
    days |= {floor_day(g["at"]) for g in costs.gpu_rows(curs, tenant_id, None, None, now)}
    return {period_window("monthly", d.astimezone(UTC))[0] for d in days}


def read_model_days(
    curs: Any, tenant_id: UUID, months: set[datetime], now: datetime
) -> dict[str, dict[str, Any]]:
    """The billing summary's days, month by month, as the API would answer them."""
    days: dict[str, dict[str, Any]] = {}
    for start in sorted(months):
        end = period_window("monthly", start)[1]
        assert end is not None
        for day in billing.summary(curs, tenant_id, start, end, now)["by_day"]:
            days[day["date"]] = day
    return days


def compare(
    tenant_id: UUID,
    bill: EventBilling,
    read_days: dict[str, dict[str, Any]],
    read_credits: Decimal,
) -> Iterator[Difference]:
    event_days = {d.date().isoformat(): s.shaped() for d, s in bill.by_day().items()}
    zero = Sums().shaped()
    for day in sorted(event_days.keys() | read_days.keys()):
        ours, theirs = event_days.get(day, zero), read_days.get(day, zero)
        for field in COMPARED:
            if Decimal(ours[field]) != Decimal(theirs[field]):
                yield Difference(tenant_id, day, field, str(ours[field]), str(theirs[field]))
    credits = sum((s.credits for s in bill.days.values()), Decimal(0))
    if credits != read_credits:
        yield Difference(
            tenant_id, "all time", "credits", billing.money(credits), billing.money(read_credits)
        )
