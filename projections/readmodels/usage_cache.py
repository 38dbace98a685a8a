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
from typing import Any
from uuid import UUID

from psycopg import Cursor

from domain.pricing import Model
from domain.usage import FIELDS, StoredDetail, UsageBatch
from projections.engine.base import Projection, live_schema

NAME = "usage_cache"
SCHEMA = live_schema(NAME)

CREATE_MODELS = """CREATE TABLE IF NOT EXISTS {s}.models (
    id uuid PRIMARY KEY, slug text NOT NULL, enabled boolean NOT NULL)"""
CREATE_COUNTS = """CREATE TABLE IF NOT EXISTS {s}.counts (
    tenant_id uuid NOT NULL, model text NOT NULL, hits bigint NOT NULL, misses bigint NOT NULL,
    prompt_tokens_saved bigint NOT NULL, completion_tokens_saved bigint NOT NULL,
    PRIMARY KEY (tenant_id, model))"""
INSERT_MODEL = "INSERT INTO {s}.models (id, slug, enabled) VALUES (%s, %s, false)"
CONFIGURE = "UPDATE {s}.models SET enabled = %s WHERE id = %s"
ENABLED = "SELECT slug FROM {s}.models WHERE enabled AND slug = ANY(%s)"
UPSERT = """INSERT INTO {s}.counts AS c (tenant_id, model, hits, misses, prompt_tokens_saved,
    completion_tokens_saved) VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (tenant_id, model) DO UPDATE SET hits = c.hits + EXCLUDED.hits,
    misses = c.misses + EXCLUDED.misses,
    prompt_tokens_saved = c.prompt_tokens_saved + EXCLUDED.prompt_tokens_saved,
    completion_tokens_saved = c.completion_tokens_saved + EXCLUDED.completion_tokens_saved"""

HITS, MISSES, PROMPT, COMPLETION = range(4)
# Where a stored record keeps its cache_hit flag (a ``StoredDetail`` element, trimmed away
# with the ones after it when it is false).
CACHE_HIT = FIELDS + StoredDetail._fields.index("cache_hit")


class UsageCacheProjection(Projection):
    """Counts each usage batch's hits and misses against the cache settings of that moment."""

    name = NAME
    tables = [CREATE_MODELS, CREATE_COUNTS]

    def registered(self, curs: Cursor[Any], e: Any) -> None:
        curs.execute(e.sql(INSERT_MODEL), (e.originator_id, e.slug))

    def cache_configured(self, curs: Cursor[Any], e: Any) -> None:
        curs.execute(e.sql(CONFIGURE), (e.enabled, e.originator_id))

    def recorded(self, curs: Cursor[Any], e: Any) -> None:
        rates = e.event.rates
        models = [m for m, _i, _o in rates]
        enabled = {r["slug"] for r in curs.execute(e.sql(ENABLED), (models,)).fetchall()}
        sums: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        for stored in e.event.records:
            # StoredRecord's order: rate index 2, tokens 3 and 4, success 6.
            if not stored[6]:
                continue
            model = rates[stored[2]][0]
            if len(stored) > CACHE_HIT and stored[CACHE_HIT] is True:
                s = sums[model]
                s[HITS] += 1
                s[PROMPT] += stored[3]
                s[COMPLETION] += stored[4]
            elif model in enabled:
                sums[model][MISSES] += 1
        tenant = e.event.tenant_id
        for model, s in sums.items():
            curs.execute(e.sql(UPSERT), (tenant, model, *s))

    handlers = {
        Model.Registered: registered,
        Model.CacheConfigured: cache_configured,
        UsageBatch.Recorded: recorded,
    }


def cache_stats(curs: Cursor[Any], scope: UUID | None) -> list[dict[str, Any]]:
    """Per tenant and model: hits, misses, hit ratio and tokens saved (``scope``: one tenant)."""
    where, params = ("WHERE tenant_id = %s", [scope]) if scope is not None else ("", [])
    rows = curs.execute(
        "SELECT tenant_id, model, hits, misses, prompt_tokens_saved, completion_tokens_saved"
        f" FROM {SCHEMA}.counts {where} ORDER BY tenant_id, model",
        params,
    ).fetchall()
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
