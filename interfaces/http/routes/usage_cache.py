"""The response cache's statistics (issue 19 §4), from the usage records."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Query

from interfaces.http.deps import Caller, Gate
from interfaces.http.routes.usage import FromQuery, ToQuery, window
from projections.readmodels import usage_cache

router = APIRouter(tags=["usage"])


@router.get("/usage/cache")
def cache_usage(
    caller: Caller,
    gate: Gate,
    tenant_id: UUID | None = Query(None, description="Only this tenant (the admin's filter)."),
    start: str | None = FromQuery,
    end: str | None = ToQuery,
) -> dict:
    """Response-cache hits, misses, hit ratio and tokens saved, per tenant and model.

    A hit is a successful request answered from the cache; a miss a successful request, not a
    hit, to a model whose cache was on; failures are neither. Tokens saved are the hits' tokens.
    Counted in hour buckets: ``from``/``to`` take the hours that start in ``[from, to)``.
    """
    lo, hi = window(start, end)
    scope = caller.tenant_filter()
    if scope is None:
        scope = tenant_id
    elif tenant_id is not None and tenant_id != scope:
        return {"from": lo, "to": hi, "data": []}  # another tenant's are not this caller's
    with gate.reading(usage_cache.NAME) as curs:
        return {"from": lo, "to": hi, "data": usage_cache.cache_stats(curs, scope, lo, hi)}
