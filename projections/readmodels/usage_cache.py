"""Read model: the response cache's hits, misses and tokens saved, per tenant and model.

Computed from the usage records (so it survives restarts and rebuilds), and from the models'
cache settings as the event log had them when each usage batch was recorded:

- a **hit** is a successful record answered from the cache (whatever the model's setting now);
- a **miss** is a successful record, not a hit, of a model whose cache was on at that point
  of the log (an answer the cache could not give, streamed ones included);
- failures (refusals, upstream errors) are neither;
- **tokens saved** are the prompt and completion tokens of the hits: what the upstream would
  have processed again.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import Cursor

from domain.pricing import Model
from domain.usage import FIELDS, StoredDetail, UsageBatch
from projections.engine.base import Projection, bucket_where, live_schema

NAME = "usage_cache"
SCHEMA = live_schema(NAME)

CREATE_MODELS = """CREATE TABLE IF NOT EXISTS {s}.models (
    id uuid PRIMARY KEY, slug text NOT NULL, enabled boolean NOT NULL)"""
# Hour buckets (``at``: the hour's start, of the records' ``occurred_at``).
CREATE_COUNTS = """CREATE TABLE IF NOT EXISTS {s}.counts (
    tenant_id uuid NOT NULL, model text NOT NULL, at timestamptz NOT NULL,
    hits bigint NOT NULL, misses bigint NOT NULL,
    prompt_tokens_saved bigint NOT NULL, completion_tokens_saved bigint NOT NULL,
    PRIMARY KEY (tenant_id, model, at))"""
INSERT_MODEL = """INSERT INTO {s}.models (id, slug, enabled) VALUES (%s, %s, false)
ON CONFLICT (id) DO UPDATE SET slug = EXCLUDED.slug"""
CONFIGURE = "UPDATE {s}.models SET enabled = %s WHERE id = %s"
ENABLED = "SELECT slug FROM {s}.models WHERE enabled AND slug = ANY(%s)"
UPSERT = """INSERT INTO {s}.counts AS c (tenant_id, model, at, hits, misses,
    prompt_tokens_saved, completion_tokens_saved)
VALUES (%s, %s, to_timestamp(%s / 1000000), %s, %s, %s, %s)
ON CONFLICT (tenant_id, model, at) DO UPDATE SET hits = c.hits + EXCLUDED.hits,
    misses = c.misses + EXCLUDED.misses,
    prompt_tokens_saved = c.prompt_tokens_saved + EXCLUDED.prompt_tokens_saved,
    completion_tokens_saved = c.completion_tokens_saved + EXCLUDED.completion_tokens_saved"""

HITS, MISSES, PROMPT, COMPLETION = range(4)
HOUR_US = 3_600_000_000
# Where a stored record keeps its cache_hit flag (a ``StoredDetail`` element, trimmed away
# with the ones after it when it is false).
CACHE_HIT = FIELDS + StoredDetail._fields.index("cache_hit")


class UsageCacheProjection(Projection):
    """Counts each usage batch's hits and misses against the cache settings of that moment.

    A batch of events is summed in memory and written at its end (or before a model's settings
    change within it, so that each record is still judged by the settings of its place in the
    log): one read of the models' settings and one upsert per hour bucket for the whole batch,
    not a round trip of each per usage event (the gateway writes hundreds a second).
    """

    name = NAME
    tables = [CREATE_MODELS, CREATE_COUNTS]

    def __init__(self) -> None:
        self._pending: dict[str, _Pending] = {}  # by schema: the live one, or a rebuild's

    def begin(self, schema: str) -> None:
        self._pending[schema] = _Pending()

    def flush(self, curs: Cursor[Any], schema: str) -> None:
        self._write(curs, schema)

    def registered(self, curs: Cursor[Any], e: Any) -> None:
        self._write(curs, e.schema)
        curs.execute(e.sql(INSERT_MODEL), (e.originator_id, e.slug))

    def cache_configured(self, curs: Cursor[Any], e: Any) -> None:
        self._write(curs, e.schema)  # the records before it count with the settings before it
        curs.execute(e.sql(CONFIGURE), (e.enabled, e.originator_id))

    def recorded(self, curs: Cursor[Any], e: Any) -> None:
        pending = self._pending.setdefault(e.schema, _Pending())
        rates = e.event.rates
        tenant = e.event.tenant_id
        for stored in e.event.records:
            # StoredRecord's order: rate index 2, tokens 3 and 4, success 6, occurred_at_us 8.
            if not stored[6]:
                continue
            bucket = (tenant, rates[stored[2]][0], stored[8] - stored[8] % HOUR_US)
            if len(stored) > CACHE_HIT and stored[CACHE_HIT] is True:
                s = pending.sums[bucket]
                s[HITS] += 1
                s[PROMPT] += stored[3]
                s[COMPLETION] += stored[4]
            else:  # a miss if the model's cache is on (read once, when written)
                pending.answered[bucket] += 1

    def _write(self, curs: Cursor[Any], schema: str) -> None:
        """Write what was summed since the last write, and start summing afresh."""
        pending = self._pending.pop(schema, None)
        self._pending[schema] = _Pending()
        if pending is None or not (pending.sums or pending.answered):
            return
        sums = pending.sums
        if pending.answered:
            models = sorted({model for _, model, _ in pending.answered})
            enabled = {
                r["slug"] for r in curs.execute(ENABLED.format(s=schema), (models,)).fetchall()
            }
            for bucket, count in pending.answered.items():
                if bucket[1] in enabled:
                    sums[bucket][MISSES] += count
        rows = [(*bucket, *s) for bucket, s in sorted(sums.items(), key=_bucket_order)]
        if rows:
            curs.executemany(UPSERT.format(s=schema), rows)

    handlers = {
        Model.Registered: registered,
        Model.CacheConfigured: cache_configured,
        UsageBatch.Recorded: recorded,
    }


Bucket = tuple[UUID, str, int]  # tenant, model, the hour's start (µs since the epoch)


class _Pending:
    """A batch's sums so far: per bucket, hits and tokens saved, and the successful answers
    not from the cache (misses, if the model's cache is on)."""

    __slots__ = ("answered", "sums")

    def __init__(self) -> None:
        self.sums: defaultdict[Bucket, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        self.answered: defaultdict[Bucket, int] = defaultdict(int)


def _bucket_order(item: tuple[Bucket, list[int]]) -> tuple[str, str, int]:
    tenant, model, hour = item[0]
    return (str(tenant), model, hour)


STATS = """SELECT tenant_id, model, sum(hits)::bigint AS hits, sum(misses)::bigint AS misses,
    sum(prompt_tokens_saved)::bigint AS prompt_tokens_saved,
    sum(completion_tokens_saved)::bigint AS completion_tokens_saved
FROM {schema}.counts WHERE {where} GROUP BY tenant_id, model ORDER BY tenant_id, model"""


def cache_stats(
    curs: Cursor[Any], scope: UUID | None, start: datetime | None, end: datetime | None
) -> list[dict[str, Any]]:
    """Per tenant and model: hits, misses, hit ratio and tokens saved, of the hour buckets in
    ``[start, end)`` (``scope``: one tenant)."""
    where, params = bucket_where(scope, start, end)
    rows = curs.execute(STATS.format(schema=SCHEMA, where=where), params).fetchall()
    out = []
    for r in rows:
        asked = r["hits"] + r["misses"]
        out.append(
            {
                **r,
                "tenant_id": str(r["tenant_id"]),
                "hit_ratio": round(r["hits"] / asked, 4) if asked else None,
                "tokens_saved": r["prompt_tokens_saved"] + r["completion_tokens_saved"],
            }
        )
    return out
