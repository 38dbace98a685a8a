"""Read model: token usage and its EUR cost in hour and day buckets per tenant, key, model, instance."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from psycopg import Cursor

from domain.pricing import token_cost
from domain.timewindow import floor_day
from domain.usage import UsageBatch, from_us
from projections.base import Projection, bucket_where, live_schema

SCHEMA = live_schema("usage")
HOUR_US = 3_600_000_000
NO_INSTANCE = UUID(int=0)  # bucket keys can't be NULL; the nil UUID means "no instance"

BUCKET_COLUMNS = """
    tenant_id uuid NOT NULL,
    key_id uuid NOT NULL,
    model text NOT NULL,
    instance_id uuid NOT NULL,
    requests bigint NOT NULL,
    successes bigint NOT NULL,
    failures bigint NOT NULL,
    prompt_tokens bigint NOT NULL,
    completion_tokens bigint NOT NULL,
    cached_tokens bigint NOT NULL,
    latency_ms bigint NOT NULL,
    cost numeric NOT NULL"""
CREATE_HOURLY = (
    "CREATE TABLE IF NOT EXISTS {s}.hourly (at timestamptz NOT NULL," + BUCKET_COLUMNS + ","
    " PRIMARY KEY (tenant_id, at, key_id, model, instance_id))"
)
CREATE_DAILY = (
    "CREATE TABLE IF NOT EXISTS {s}.daily (at timestamptz NOT NULL," + BUCKET_COLUMNS + ","
    " PRIMARY KEY (tenant_id, at, key_id, model, instance_id))"
)
CREATE_HOURLY_KEY = "CREATE INDEX IF NOT EXISTS hourly_key ON {s}.hourly (key_id, at)"
CREATE_DAILY_KEY = "CREATE INDEX IF NOT EXISTS daily_key ON {s}.daily (key_id, at)"

UPSERT = """
INSERT INTO {s}.{table} AS b (tenant_id, at, key_id, model, instance_id, requests, successes,
    failures, prompt_tokens, completion_tokens, cached_tokens, latency_ms, cost)
SELECT * FROM unnest(%s::uuid[], %s::timestamptz[], %s::uuid[], %s::text[], %s::uuid[],
    %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[],
    %s::bigint[], %s::numeric[])
ON CONFLICT (tenant_id, at, key_id, model, instance_id) DO UPDATE SET
    requests = b.requests + EXCLUDED.requests,
    successes = b.successes + EXCLUDED.successes,
    failures = b.failures + EXCLUDED.failures,
    prompt_tokens = b.prompt_tokens + EXCLUDED.prompt_tokens,
    completion_tokens = b.completion_tokens + EXCLUDED.completion_tokens,
    cached_tokens = b.cached_tokens + EXCLUDED.cached_tokens,
    latency_ms = b.latency_ms + EXCLUDED.latency_ms,
    cost = b.cost + EXCLUDED.cost"""

# requests, successes, failures, prompt, completion, cached, latency, cost
Sums = list[Any]


def _zero() -> Sums:
    return [0, 0, 0, 0, 0, 0, 0, Decimal(0)]


Buckets = dict[tuple[UUID, datetime, UUID, str, UUID], Sums]


class UsageProjection(Projection):
    """Folds every usage batch of a runner batch into buckets, then writes one upsert per table."""

    name = "usage"
    tables = [CREATE_HOURLY, CREATE_DAILY]
    indexes = [CREATE_HOURLY_KEY, CREATE_DAILY_KEY]

    def __init__(self) -> None:
        # Per target schema: a rebuild can run beside the live worker in the same process.
        self._raw: dict[str, dict[tuple[Any, ...], Sums]] = {}

    def begin(self, schema: str) -> None:
        self._raw[schema] = defaultdict(_zero)

    def recorded(self, curs: Cursor[Any], e: Any) -> None:
        # The stored columns are folded as they are (key and instance as text, time in µs);
        # each bucket's key is turned into UUIDs and datetimes once, at flush. Each record's
        # cost is rated exactly as ``iter_lines`` rates it.
        raw = self._raw[e.schema]
        tenant = e.tenant_id
        rates = [(m, Decimal(i), Decimal(o)) for m, i, o in e.event.rates]
        for _rid, key, idx, prompt, completion, cached, ok, latency, at, inst in e.event.records:
            model, input_price, output_price = rates[idx]
            sums = raw[(tenant, at - at % HOUR_US, key, model, inst)]
            sums[0] += 1
            sums[1 if ok else 2] += 1
            sums[3] += prompt
            sums[4] += completion
            sums[5] += cached
            sums[6] += latency
            sums[7] += token_cost(prompt, completion, input_price, output_price)

    def _hourly(self, schema: str) -> Buckets:
        """The batch's raw buckets, keyed by UUIDs and datetimes."""
        hourly: Buckets = defaultdict(_zero)
        for (tenant, hour, key, model, inst), sums in self._raw.pop(schema, {}).items():
            bucket = hourly[
                (tenant, from_us(hour), UUID(key), model, UUID(inst) if inst else NO_INSTANCE)
            ]
            for i, v in enumerate(sums):
                bucket[i] += v
        return hourly

    def flush(self, curs: Cursor[Any], schema: str) -> None:
        hourly = self._hourly(schema)
        if not hourly:
            return
        daily: Buckets = defaultdict(_zero)
        for (tenant, hour, *rest), sums in hourly.items():
            day = daily[(tenant, floor_day(hour), *rest)]  # type: ignore[index]
            for i, v in enumerate(sums):
                day[i] += v
        for table, buckets in (("hourly", hourly), ("daily", daily)):
            keys = list(buckets)
            columns = [
                *([k[i] for k in keys] for i in range(5)),
                *([buckets[k][i] for k in keys] for i in range(8)),
            ]
            curs.execute(UPSERT.format(s=schema, table=table), columns)

    handlers = {UsageBatch.Recorded: recorded}


GROUPS = {"tenant": "tenant_id", "key": "key_id", "model": "model", "instance": "instance_id"}
SUMS = """count(*) AS buckets, coalesce(sum(requests), 0)::bigint AS requests,
    coalesce(sum(successes), 0)::bigint AS successes, coalesce(sum(failures), 0)::bigint AS failures,
    coalesce(sum(prompt_tokens), 0)::bigint AS prompt_tokens,
    coalesce(sum(completion_tokens), 0)::bigint AS completion_tokens,
    coalesce(sum(cached_tokens), 0)::bigint AS cached_tokens,
    coalesce(sum(latency_ms), 0)::bigint AS latency_ms, coalesce(sum(cost), 0) AS cost"""


def table_for(start: datetime | None, end: datetime | None) -> str:
    """Day buckets when the range is made of whole days, else hour buckets."""
    aligned = all(t is None or t == floor_day(t) for t in (start, end))
    return "daily" if aligned else "hourly"


def totals(
    curs: Cursor[Any],
    scope: UUID | None,
    group_by: list[str],
    start: datetime | None,
    end: datetime | None,
    key_id: UUID | None = None,
    interval: str | None = None,
) -> list[dict[str, Any]]:
    """Sums of the buckets in ``[start, end)``, grouped by the named dimensions (and time)."""
    where, params = bucket_where(scope, start, end, key_id)
    columns = [GROUPS[g] for g in group_by]
    table = table_for(start, end)
    if interval == "hour":
        table = "hourly"
        columns.insert(0, "at")
    elif interval == "day":
        columns.insert(0, "at")
    select = ", ".join([*columns, SUMS.replace("count(*) AS buckets, ", "")])
    group = f" GROUP BY {', '.join(columns)} ORDER BY {', '.join(columns)}" if columns else ""
    return curs.execute(
        f"SELECT {select} FROM {SCHEMA}.{table} WHERE {where}{group}", params
    ).fetchall()


def spent(
    curs: Cursor[Any], tenant_id: UUID, key_id: UUID | None, start: datetime, end: datetime | None
) -> Decimal:
    where, params = bucket_where(tenant_id, start, end, key_id)
    row = curs.execute(
        f"SELECT coalesce(sum(cost), 0) AS cost FROM {SCHEMA}.{table_for(start, end)} WHERE {where}",
        params,
    ).fetchone()
    return row["cost"]
