"""Read model: token usage and its EUR cost in hour and day buckets per tenant, key, model, instance."""

from __future__ import annotations

import functools
import re
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from psycopg import Cursor

from domain.pricing import token_cost
from domain.timewindow import floor_day
from domain.usage import DAY_US, UsageBatch
from projections.engine.base import Projection, bucket_where, live_schema
from projections.readmodels.usage_cost import (
    CACHE_HITS,
    CACHED_TOKENS,
    CANCELLED,
    COMPLETION_TOKENS,
    COST,
    COUNTS,
    DETAIL_COUNTS,
    ESTIMATED,
    EXPONENT,
    FAILURES,
    FINER,
    LATENCY_MS,
    PROMPT_TOKENS,
    REQUESTS,
    STREAMED,
    SUCCESSES,
    TTFT_COUNT,
    TTFT_MS,
    Sums,
    cost_of,
    exponent_of,
    merge,
    rate,
    zero,
)

SCHEMA = live_schema("usage")
HOUR_US = 3_600_000_000
NO_INSTANCE = UUID(int=0)  # bucket keys can't be NULL; the nil UUID means "no instance"
NO_INSTANCE_TEXT = str(NO_INSTANCE)

SUM_COLUMNS = (
    "requests",
    "successes",
    "failures",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "latency_ms",
)
# How the requests went (issue 18 §6), in ``DETAIL_COUNTS``' order; added to read models made
# before them (those count them from their rebuild: ``hostplane projections rebuild usage``).
DETAIL_COLUMNS = ("cancelled", "streamed", "estimated", "cache_hits", "ttft_ms", "ttft_count")
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
WIDEN = [
    f"ALTER TABLE {{s}}.{table} ADD COLUMN IF NOT EXISTS {c} bigint NOT NULL DEFAULT 0"
    for table in ("hourly", "daily")
    for c in DETAIL_COLUMNS
]
# Usage per vendor (the BYOK upstream's; '' for none: a GPU instance, or a record that didn't
# say) and model: seed 003's "usage by vendor and model, with success/fail counts".
VENDOR_COLUMNS = (
    "tenant_id uuid NOT NULL, at timestamptz NOT NULL, vendor text NOT NULL, model text NOT NULL,"
    + ",".join(f" {c} bigint NOT NULL" for c in (*SUM_COLUMNS, *DETAIL_COLUMNS))
    + ", cost numeric NOT NULL, PRIMARY KEY (tenant_id, at, vendor, model)"
)
CREATE_VENDOR_HOURLY = "CREATE TABLE IF NOT EXISTS {s}.vendor_hourly (" + VENDOR_COLUMNS + ")"
CREATE_VENDOR_DAILY = "CREATE TABLE IF NOT EXISTS {s}.vendor_daily (" + VENDOR_COLUMNS + ")"
# A read model made before the vendor buckets: they are filled once from its buckets (all its
# records named no vendor), so that an upgrade needs no rebuild; a rebuild counts the detail.
BACKFILL_VENDORS = [
    f"INSERT INTO {{s}}.vendor_{table} (tenant_id, at, vendor, model,"
    f" {', '.join(SUM_COLUMNS)}, {', '.join(DETAIL_COLUMNS)}, cost)"
    f" SELECT tenant_id, at, '', model, {', '.join(f'sum({c})' for c in SUM_COLUMNS)},"
    f" {', '.join('0' for _ in DETAIL_COLUMNS)}, sum(cost) FROM {{s}}.{table}"
    f" WHERE NOT EXISTS (SELECT FROM {{s}}.vendor_{table}) GROUP BY tenant_id, at, model"
    for table in ("hourly", "daily")
]
CREATE_HOURLY_KEY = "CREATE INDEX IF NOT EXISTS hourly_key ON {s}.hourly (key_id, at)"
CREATE_DAILY_KEY = "CREATE INDEX IF NOT EXISTS daily_key ON {s}.daily (key_id, at)"

ALL_SUMS = (*SUM_COLUMNS, *DETAIL_COLUMNS, "cost")


def _upsert(table: str, at: str, keys: tuple[str, ...]) -> str:
    """Sum the input's rows into ``table``'s buckets of ``at`` (hour_us or day_us) and keys."""
    key_list = ", ".join(keys)
    summed = ", ".join(f"sum({c})" for c in ALL_SUMS)
    added = ",\n        ".join(f"{c} = b.{c} + EXCLUDED.{c}" for c in ALL_SUMS)
    return (
        f"INSERT INTO {{s}}.{table} AS b (tenant_id, at, {key_list}, {', '.join(ALL_SUMS)})\n"
        f"    SELECT tenant_id, to_timestamp({at} / 1000000), {key_list}, {summed}\n"
        f"    FROM input GROUP BY tenant_id, {at}, {key_list}\n"
        f"    ON CONFLICT (tenant_id, at, {key_list}) DO UPDATE SET\n        {added}"
    )


# A batch's buckets arrive as one array literal per column (built by joining strings: no
# Python call per value), keyed by hour and day in µs since the epoch, and by vendor too;
# each table sums them to its own buckets.
INPUT_COLUMNS = (
    "tenant_id uuid",
    "hour_us bigint",
    "day_us bigint",
    "key_id uuid",
    "model text",
    "instance_id uuid",
    "vendor text",
    *(f"{c} bigint" for c in (*SUM_COLUMNS, *DETAIL_COLUMNS)),
    "cost numeric",
)
BUCKET_KEYS = ("key_id", "model", "instance_id")
VENDOR_KEYS = ("vendor", "model")
UPSERT = (
    "WITH input AS MATERIALIZED (\n    SELECT * FROM unnest("
    + ", ".join(f"%s::{c.split()[1]}[]" for c in INPUT_COLUMNS)
    + ")\n    AS t("
    + ", ".join(c.split()[0] for c in INPUT_COLUMNS)
    + ")\n), "
    + ", ".join(
        f"w{i} AS ({_upsert(table, at, keys)})"
        for i, (table, at, keys) in enumerate(
            (
                ("hourly", "hour_us", BUCKET_KEYS),
                ("daily", "day_us", BUCKET_KEYS),
                ("vendor_hourly", "hour_us", VENDOR_KEYS),
            )
        )
    )
    + "\n"
    + _upsert("vendor_daily", "day_us", VENDOR_KEYS)
)


def array(values: list[str]) -> str:
    """A PostgreSQL array literal of values that need no quoting (numbers, UUIDs)."""
    return "{" + ",".join(values) + "}"


UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
CANONICAL_CACHE_SIZE = 100_000


def canonical(raw: dict[tuple[Any, ...], Sums], known: set[str]) -> dict[tuple[Any, ...], Sums]:
    """Buckets keyed by canonical UUID text, so that no two are one row in the database.

    Records store ``str(UUID)``, so this is a look-up per bucket in ``known`` (the strings
    checked so far); a key spelled otherwise (or an empty instance) is rewritten and merged.
    """
    odd = False
    for key in raw:
        for text in (key[2], key[4]):
            if text is not None and text not in known:
                if UUID_TEXT.match(text):
                    if len(known) > CANONICAL_CACHE_SIZE:
                        known.clear()
                    known.add(text)
                else:
                    odd = True
    if not odd:
        return raw
    merged: dict[tuple[Any, ...], Sums] = defaultdict(zero)
    for (tenant, hour, key, model, inst, *rest), sums in raw.items():
        merge(
            merged[(tenant, hour, str(UUID(key)), model, str(UUID(inst)) if inst else None, *rest)],
            sums,
        )
    return merged


def add_detail(sums: Sums, detail: list[Any]) -> None:
    """Count a stored record's ``StoredDetail`` (status, vendor, ttft_ms, streamed, ...)."""
    status, _vendor, ttft, streamed, estimated, cache_hit = (*detail, None, None, 0, 0, 0)[:6]
    if status == "cancelled":
        sums[CANCELLED] += 1
    if ttft is not None:
        sums[TTFT_MS] += ttft
        sums[TTFT_COUNT] += 1
    if streamed:
        sums[STREAMED] += 1
    if estimated:
        sums[ESTIMATED] += 1
    if cache_hit:
        sums[CACHE_HITS] += 1


@functools.cache
def quoted(text: str) -> str:
    """An array element quoted as PostgreSQL reads it back exactly."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class UsageProjection(Projection):
    """Folds every usage batch of a runner batch into buckets, then writes them in one statement."""

    name = "usage"
    folds = True
    tables = [
        CREATE_HOURLY,
        CREATE_DAILY,
        *WIDEN,
        CREATE_VENDOR_HOURLY,
        CREATE_VENDOR_DAILY,
        *BACKFILL_VENDORS,
    ]
    indexes = [CREATE_HOURLY_KEY, CREATE_DAILY_KEY]

    def __init__(self) -> None:
        # Per target schema: a rebuild can run beside the live worker in the same process.
        self._raw: dict[str, dict[tuple[Any, ...], Sums]] = {}
        self._known: set[str] = set()  # UUID texts known to be canonical

    def begin(self, schema: str) -> None:
        self._raw[schema] = defaultdict(zero)

    def recorded(self, curs: Cursor[Any], e: Any) -> None:
        # The stored columns are folded as they are (key and instance as text, time in µs),
        # and written as text: no UUID or datetime is made per record or per bucket. Each
        # record's cost is rated exactly as ``iter_lines`` rates it, summed in integers
        # (``add_cost``, inlined: this loop runs once per usage record ever stored). Records
        # are unpacked in ``StoredRecord``'s order: ``StoredRecord._make`` and its attributes
        # measured 0.70 ms per 1,000 records folded, against 0.38 ms.
        raw = self._raw[e.schema]
        tenant = str(e.event.tenant_id)
        rates = [rate(m, i, o) for m, i, o in e.event.rates]
        for (
            _rid,
            key,
            idx,
            prompt,
            completion,
            cached,
            ok,
            latency,
            at,
            inst,
            *detail,
        ) in e.event.records:
            model, ci, co, factor, floor, input_price, output_price = rates[idx]
            vendor = (detail[1] or "") if len(detail) > 1 else ""
            sums = raw[(tenant, at - at % HOUR_US, key, model, inst, vendor)]
            sums[REQUESTS] += 1
            sums[SUCCESSES if ok else FAILURES] += 1
            sums[PROMPT_TOKENS] += prompt
            sums[COMPLETION_TOKENS] += completion
            sums[CACHED_TOKENS] += cached
            sums[LATENCY_MS] += latency
            if detail:  # the gateway's records (``StoredDetail``); most others have none
                add_detail(sums, detail)
            if floor is None:
                sums[FINER] += token_cost(prompt, completion, input_price, output_price)
                continue
            n = prompt * ci + completion * co
            sums[COST] += n * factor
            if sums[EXPONENT] > floor:
                sums[EXPONENT] = min(sums[EXPONENT], exponent_of(n, floor))

    def detach(self, schema: str) -> Callable[[Cursor[Any]], None]:
        raw = self._raw.pop(schema, None)
        return lambda curs: self._write(curs, schema, raw)

    def _write(
        self, curs: Cursor[Any], schema: str, raw: dict[tuple[Any, ...], Sums] | None
    ) -> None:
        if not raw:
            return
        raw = canonical(raw, self._known)
        keys = list(raw)
        sums = list(raw.values())
        hours = [k[1] for k in keys]
        columns = [
            array([k[0] for k in keys]),
            array(list(map(str, hours))),
            array([str(h - h % DAY_US) for h in hours]),
            array([k[2] for k in keys]),
            array([quoted(k[3]) for k in keys]),
            array([k[4] or NO_INSTANCE_TEXT for k in keys]),
            array([quoted(k[5]) for k in keys]),
            *(array([str(v[i]) for v in sums]) for i in (*COUNTS, *DETAIL_COUNTS)),
            array([str(cost_of(v)) for v in sums]),
        ]
        curs.execute(UPSERT.format(s=schema), columns)

    handlers = {UsageBatch.Recorded: recorded}


GROUPS = {
    "tenant": "tenant_id",
    "key": "key_id",
    "model": "model",
    "instance": "instance_id",
    "vendor": "vendor",
}
# Dimensions the vendor buckets keep (they have no key or instance).
VENDOR_GROUPS = frozenset(("tenant", "model", "vendor"))
SUMS = """coalesce(sum(requests), 0)::bigint AS requests,
    coalesce(sum(successes), 0)::bigint AS successes, coalesce(sum(failures), 0)::bigint AS failures,
    coalesce(sum(prompt_tokens), 0)::bigint AS prompt_tokens,
    coalesce(sum(completion_tokens), 0)::bigint AS completion_tokens,
    coalesce(sum(cached_tokens), 0)::bigint AS cached_tokens,
    coalesce(sum(latency_ms), 0)::bigint AS latency_ms, coalesce(sum(cost), 0) AS cost"""
# How the requests went; ``ttft_ms`` is the sum over the ``ttft_count`` streamed requests
# that had a first token (its mean: ``ttft_ms / ttft_count``).
DETAIL_SUMS = ", ".join(f"coalesce(sum({c}), 0)::bigint AS {c}" for c in DETAIL_COLUMNS)


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
    """Sums of the buckets in ``[start, end)``, grouped by the named dimensions (and time).

    Grouped by ``vendor``, the vendor buckets answer (``vendor`` is '' where none was known:
    a GPU instance, or a record that named none); they keep no key or instance.
    """
    where, params = bucket_where(scope, start, end, key_id)
    columns = [GROUPS[g] for g in group_by]
    table = table_for(start, end)
    if interval == "hour":
        table = "hourly"
        columns.insert(0, "at")
    elif interval == "day":
        columns.insert(0, "at")
    if "vendor" in group_by:
        assert set(group_by) <= VENDOR_GROUPS and key_id is None
        table = "vendor_" + table
    select = ", ".join([*columns, SUMS, DETAIL_SUMS])
    group = f" GROUP BY {', '.join(columns)} ORDER BY {', '.join(columns)}" if columns else ""
    return curs.execute(
        f"SELECT {select} FROM {SCHEMA}.{table} WHERE {where}{group}", params
    ).fetchall()


# One scan for the billing summary: the range's sums per day, per key, per model and per
# instance. ``by`` names the grouping a row belongs to; the other three columns are NULL in it.
SUMMARY = """
SELECT CASE WHEN GROUPING(at) = 0 THEN 'at' WHEN GROUPING(key_id) = 0 THEN 'key_id'
            WHEN GROUPING(model) = 0 THEN 'model' ELSE 'instance_id' END AS by,
       at, key_id, model, instance_id, {sums}
FROM {schema}.{table} WHERE {where}
GROUP BY GROUPING SETS ((at), (key_id), (model), (instance_id))"""


def summary_totals(
    curs: Cursor[Any], tenant_id: UUID, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """Sums of ``[start, end)`` per bucket time, key, model and instance, in one scan.

    Each row's ``by`` is the column it is grouped by ("at", "key_id", "model" or "instance_id").
    The work left to the caller is one row per day, key, model and instance, however many of
    their combinations the range holds."""
    where, params = bucket_where(tenant_id, start, end, None)
    sql = SUMMARY.format(
        sums=SUMS,
        schema=SCHEMA,
        table=table_for(start, end),
        where=where,
    )
    return curs.execute(sql, params).fetchall()


def spent(
    curs: Cursor[Any], tenant_id: UUID, key_id: UUID | None, start: datetime, end: datetime | None
) -> Decimal:
    where, params = bucket_where(tenant_id, start, end, key_id)
    row = curs.execute(
        f"SELECT coalesce(sum(cost), 0) AS cost FROM {SCHEMA}.{table_for(start, end)} WHERE {where}",
        params,
    ).fetchone()
    return row["cost"]
