"""Read model: GPU time and its EUR cost per instance and hour, and tenants' credits."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from psycopg import Cursor

from domain.instance import Instance
from domain.pricing import gpu_cost
from domain.tenant import Tenant
from domain.timewindow import split_hours
from projections.engine.base import Projection, bucket_where, live_schema

SCHEMA = live_schema("costs")

CREATE_RUNS = """
CREATE TABLE IF NOT EXISTS {s}.runs (
    instance_id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL,
    eur_per_hour numeric NOT NULL,
    running_since timestamptz
)"""
CREATE_GPU_HOURLY = """
CREATE TABLE IF NOT EXISTS {s}.gpu_hourly (
    tenant_id uuid NOT NULL,
    instance_id uuid NOT NULL,
    at timestamptz NOT NULL,
    microseconds bigint NOT NULL,
    cost numeric NOT NULL,
    PRIMARY KEY (tenant_id, at, instance_id)
)"""
CREATE_CREDITS = """
CREATE TABLE IF NOT EXISTS {s}.credits (tenant_id uuid PRIMARY KEY, credits numeric NOT NULL)"""

INSERT_RUN = "INSERT INTO {s}.runs (instance_id, tenant_id, eur_per_hour) VALUES (%s, %s, %s)"
SELECT_RUN = "SELECT tenant_id, eur_per_hour, running_since FROM {s}.runs WHERE instance_id = %s"
SET_RUNNING = "UPDATE {s}.runs SET running_since = %s WHERE instance_id = %s"
ADD_GPU = """
INSERT INTO {s}.gpu_hourly AS g (tenant_id, at, instance_id, microseconds, cost)
VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (tenant_id, at, instance_id) DO UPDATE SET
    microseconds = g.microseconds + EXCLUDED.microseconds, cost = g.cost + EXCLUDED.cost"""
ADD_CREDITS = """
INSERT INTO {s}.credits AS c (tenant_id, credits) VALUES (%s, %s)
ON CONFLICT (tenant_id) DO UPDATE SET credits = c.credits + EXCLUDED.credits"""


def gpu_pieces(
    eur_per_hour: Decimal, start: datetime, end: datetime
) -> Iterator[tuple[datetime, int, Decimal]]:
    """A running interval split exactly at hour (hence midnight) boundaries, each piece rated.

    Times read back from PostgreSQL come in the session's time zone: split in UTC.
    """
    for hour, us in split_hours(start.astimezone(UTC), end.astimezone(UTC)):
        yield hour, us, gpu_cost(eur_per_hour, us)


class CostsProjection(Projection):
    name = "costs"
    tables = [CREATE_RUNS, CREATE_GPU_HOURLY, CREATE_CREDITS]

    def deploy_requested(self, curs: Cursor[Any], e: Any) -> None:
        curs.execute(e.sql(INSERT_RUN), (e.originator_id, e.tenant_id, e.hourly_rate_eur))

    def status_changed(self, curs: Cursor[Any], e: Any) -> None:
        run = curs.execute(e.sql(SELECT_RUN), (e.originator_id,)).fetchone()
        if run is None:
            return  # a BYOK upstream: no GPU, no GPU time
        if e.status == "running" and run["running_since"] is None:
            curs.execute(e.sql(SET_RUNNING), (e.timestamp, e.originator_id))
        elif e.status != "running" and run["running_since"] is not None:
            for hour, us, cost in gpu_pieces(
                run["eur_per_hour"], run["running_since"], e.timestamp
            ):
                curs.execute(e.sql(ADD_GPU), (run["tenant_id"], hour, e.originator_id, us, cost))
            curs.execute(e.sql(SET_RUNNING), (None, e.originator_id))

    def credits_added(self, curs: Cursor[Any], e: Any) -> None:
        curs.execute(e.sql(ADD_CREDITS), (e.originator_id, e.amount_eur))

    handlers = {
        Instance.DeployRequested: deploy_requested,
        Instance.StatusChanged: status_changed,
        Tenant.CreditsAdded: credits_added,
    }


def gpu_rows(
    curs: Cursor[Any],
    scope: UUID | None,
    start: datetime | None,
    end: datetime | None,
    now: datetime,
) -> list[dict[str, Any]]:
    """GPU hour buckets in ``[start, end)``: closed intervals, plus open ones rated up to ``now``."""
    where, params = bucket_where(scope, start, end)
    rows = curs.execute(
        f"SELECT tenant_id, instance_id, at, microseconds, cost FROM {SCHEMA}.gpu_hourly"
        f" WHERE {where}",
        params,
    ).fetchall()
    open_where, open_params = ["running_since IS NOT NULL"], []
    if scope is not None:
        open_where.append("tenant_id = %s")
        open_params.append(scope)
    for run in curs.execute(
        f"SELECT instance_id, tenant_id, eur_per_hour, running_since FROM {SCHEMA}.runs"
        f" WHERE {' AND '.join(open_where)}",
        open_params,
    ).fetchall():
        hi = min(end, now) if end else now
        # Pieces start at running_since's own hour boundaries, exactly as when the run closes;
        # a range starts at midnight, so whole pieces fall either inside it or outside.
        for hour, us, cost in gpu_pieces(run["eur_per_hour"], run["running_since"], hi):
            if start is None or hour >= start:
                rows.append(
                    {
                        "tenant_id": run["tenant_id"],
                        "instance_id": run["instance_id"],
                        "at": hour,
                        "microseconds": us,
                        "cost": cost,
                    }
                )
    return rows


def credits_of(curs: Cursor[Any], tenant_id: UUID) -> Decimal:
    row = curs.execute(
        f"SELECT credits FROM {SCHEMA}.credits WHERE tenant_id = %s", (tenant_id,)
    ).fetchone()
    return row["credits"] if row else Decimal(0)
