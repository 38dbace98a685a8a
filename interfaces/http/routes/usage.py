"""Usage ingestion and usage / cost queries (seeds 003 and 004)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal
from uuid import UUID

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from application.auth import Principal
from application.usage import Usage
from domain.timewindow import DAY, HOUR, check_span, floor_day, floor_hour, shifted
from interfaces.http.deps import Caller, Gate, SettingsDep, UsageDep
from interfaces.http.openapi import DATE_OR_TIME
from interfaces.http.times import time_range
from interfaces.http.usage_body import parse_usage_batch
from interfaces.settings import Settings
from projections.readmodels import usage
from projections.reports import billing

router = APIRouter(tags=["usage"])


class IngestOut(BaseModel):
    accepted: int
    duplicates: int
    batch_ids: list[UUID]


INGEST_BODY = {
    "required": True,
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/UsageBatchIn"}}},
}


@router.post("/usage/events", response_model=IngestOut, openapi_extra={"requestBody": INGEST_BODY})
async def ingest(request: Request, caller: Caller, commands: UsageDep) -> IngestOut:
    """Record a batch of 1-10,000 requests, atomically: one invalid record refuses the batch.

    A ``request_id`` already recorded for the tenant is counted once (``duplicates``).
    Records are rated with the prices in effect at their ``occurred_at``.
    """
    body = await request.body()
    return await run_in_threadpool(_ingest, body, caller, commands)


def _ingest(body: bytes, caller: Principal, commands: Usage) -> IngestOut:
    result = commands.ingest_usage(caller, parse_usage_batch(body))
    return IngestOut(
        accepted=result.accepted, duplicates=result.duplicates, batch_ids=result.batch_ids
    )


def window(start: str | None, end: str | None) -> tuple[datetime | None, datetime | None]:
    return time_range(start, end, "from", "to")


def shape(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in row.items():
        if k == "cost":
            out["cost"] = billing.money(v)
        elif k == "instance_id":
            out[k] = None if v == usage.NO_INSTANCE else str(v)
        elif k == "vendor":
            out[k] = v or None  # '': no vendor known (a GPU instance's answer)
        elif isinstance(v, UUID):
            out[k] = str(v)
        elif isinstance(v, datetime):
            out[k] = v.astimezone(UTC)  # the session's time zone may not be UTC
        else:
            out[k] = v
    return out


FromQuery = Query(
    None,
    alias="from",
    description="Start (date or ISO time), inclusive.",
    json_schema_extra=DATE_OR_TIME,
)
ToQuery = Query(
    None,
    alias="to",
    description="End (date or ISO time), exclusive.",
    json_schema_extra=DATE_OR_TIME,
)


def series_window(
    settings: Settings, start: str | None, end: str | None, interval: str
) -> tuple[datetime, datetime]:
    """The range of a series: at most ``max_range_days`` by day, ``max_hourly_range_days`` by hour.

    A series answers one row per bucket, so its range is bounded; a longer one is a 400 naming
    ``to``. A missing end is filled in with the longest range allowed: no ``to`` ends that long
    after ``from``, no ``from`` starts that long before ``to``, and neither ends with the
    current bucket. The answer's ``from`` and ``to`` say which range was used.
    """
    days = settings.max_hourly_range_days if interval == "hour" else settings.max_range_days
    span = timedelta(days=days)
    lo, hi = window(start, end)
    if hi is None and lo is not None:
        hi = shifted(lo, span)
    elif hi is None:
        now = datetime.now(UTC)
        hi = floor_hour(now) + HOUR if interval == "hour" else floor_day(now) + DAY
    if lo is None:
        lo = shifted(hi, -span)
    check_span(lo, hi, days, "from", "to")
    return lo, hi


def _totals(
    gate: Gate,
    caller: Caller,
    group_by: list[str],
    lo: datetime | None,
    hi: datetime | None,
    interval: str | None = None,
) -> dict:
    with gate.reading("usage") as curs:
        rows = usage.totals(curs, caller.tenant_filter(), group_by, lo, hi, interval=interval)
    return {"currency": "EUR", "from": lo, "to": hi, "data": [shape(r) for r in rows]}


@router.get("/usage")
def usage_totals(
    caller: Caller,
    gate: Gate,
    group_by: Literal["tenant", "key", "model", "instance", "vendor"] = "tenant",
    start: str | None = FromQuery,
    end: str | None = ToQuery,
) -> dict:
    """Requests, successes, failures, tokens, cost and how the requests went (cancelled,
    streamed, estimated, cache hits, time to first token), grouped by tenant, key, model,
    instance or vendor (a BYOK upstream's; null for GPU instances)."""
    return _totals(gate, caller, [group_by], *window(start, end))


def by_vendor(result: dict) -> dict:
    """Rows per vendor and model; a record that named no vendor counts for its model's maker
    (``vendor_of``), with the rows that did name it."""
    merged: dict[tuple[str, str], dict] = {}
    for row in result["data"]:
        row["vendor"] = row["vendor"] or vendor_of(row["model"])
        kept = merged.get((row["vendor"], row["model"]))
        if kept is None:
            merged[(row["vendor"], row["model"])] = row
            continue
        for k, v in row.items():
            if k == "cost":
                kept[k] = billing.money(Decimal(kept[k]) + Decimal(v))
            elif type(v) is int:
                kept[k] += v
    result["data"] = sorted(merged.values(), key=lambda r: (r["vendor"], r["model"]))
    return result


@dataclass(frozen=True)
class Totals:
    """One ``GET /usage/...`` route: usage totals grouped one way, over a range or a series."""

    path: str
    name: str  # the endpoint's name (in its OpenAPI operation id and summary)
    group_by: list[str]
    description: str
    series: bool = False  # with ``interval``: one row per hour or day
    then: Callable[[dict], dict] | None = None  # reshapes the answer


TOTALS = [
    Totals("/usage/keys", "usage_by_key", ["key"], "Usage per key."),
    Totals("/usage/models", "usage_by_model", ["model"], "Usage per model."),
    Totals(
        "/usage/vendors",
        "usage_by_vendor",
        ["vendor", "model"],
        "Usage per vendor and model, with success and failure counts (seed 003).",
        then=by_vendor,
    ),
    Totals("/usage/series", "usage_series", [], "Usage over time, per hour or per day.", True),
    Totals(
        "/usage/series/tenants",
        "usage_series_tenants",
        ["tenant"],
        "Usage over time per tenant.",
        True,
    ),
]


def totals_route(t: Totals) -> Callable[..., dict]:
    then = t.then or (lambda result: result)
    if t.series:

        def series(
            caller: Caller,
            gate: Gate,
            settings: SettingsDep,
            interval: Literal["hour", "day"] = "day",
            start: str | None = FromQuery,
            end: str | None = ToQuery,
        ) -> dict:
            lo, hi = series_window(settings, start, end, interval)
            return then(_totals(gate, caller, t.group_by, lo, hi, interval))

        return series

    def ranged(
        caller: Caller,
        gate: Gate,
        start: str | None = FromQuery,
        end: str | None = ToQuery,
    ) -> dict:
        return then(_totals(gate, caller, t.group_by, *window(start, end)))

    return ranged


for t in TOTALS:
    router.add_api_route(
        t.path, totals_route(t), methods=["GET"], name=t.name, description=t.description
    )


@router.get("/costs")
def cost_breakdown(
    caller: Caller,
    gate: Gate,
    group_by: Literal["model", "key", "instance", "tenant"] = "model",
    start: str | None = FromQuery,
    end: str | None = ToQuery,
) -> dict:
    """EUR cost, tokens versus GPU time, by model, key, instance or tenant."""
    lo, hi = window(start, end)
    with gate.reading("usage", "costs") as curs:
        rows = billing.cost_breakdown(
            curs, caller.tenant_filter(), group_by, lo, hi, datetime.now(UTC)
        )
    return {"currency": "EUR", "from": lo, "to": hi, "data": rows}


VENDORS = {
    "gpt": "openai",
    "o1": "openai",
    "claude": "anthropic",
    "gemini": "google",
    "deepseek": "deepseek",
    "qwen": "qwen",
    "kimi": "moonshot",
    "minimax": "minimax",
    "mistral": "mistral",
    "llama": "meta",
}


def vendor_of(model: str) -> str:
    return next((v for prefix, v in VENDORS.items() if model.startswith(prefix)), "other")
