"""Usage ingestion and usage / cost queries (seeds 003 and 004)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from uuid import UUID

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from application.auth import Principal
from domain.base import InvalidValueError, utc
from domain.timewindow import DAY, HOUR, check_span, floor_day, floor_hour, shifted
from interfaces.bootstrap import Container
from interfaces.http.deps import Caller, ContainerDep
from interfaces.http.openapi import DATE_OR_TIME
from interfaces.http.usage_body import parse_usage_batch
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
async def ingest(request: Request, caller: Caller, container: ContainerDep) -> IngestOut:
    """Record a batch of 1-10,000 requests, atomically: one invalid record refuses the batch.

    A ``request_id`` already recorded for the tenant is counted once (``duplicates``).
    Records are rated with the prices in effect at their ``occurred_at``.
    """
    body = await request.body()
    return await run_in_threadpool(_ingest, body, caller, container)


def _ingest(body: bytes, caller: Principal, container: Container) -> IngestOut:
    result = container.app.ingest_usage(caller, parse_usage_batch(body))
    container.watch_budgets(result.tenant_ids)
    return IngestOut(
        accepted=result.accepted, duplicates=result.duplicates, batch_ids=result.batch_ids
    )


def parse_time(value: str | None, field: str) -> datetime | None:
    """A date (its midnight UTC) or an ISO 8601 time."""
    if value is None:
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidValueError(field, f"{field} must be a date or an ISO 8601 time") from None
    return utc(t, field)


def window(start: str | None, end: str | None) -> tuple[datetime | None, datetime | None]:
    lo, hi = parse_time(start, "from"), parse_time(end, "to")
    if lo is not None and hi is not None and hi < lo:
        raise InvalidValueError("to", "to must not be before from")
    return lo, hi


def shape(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in row.items():
        if k == "cost":
            out["cost"] = billing.money(v)
        elif k == "instance_id":
            out[k] = None if v == usage.NO_INSTANCE else str(v)
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
    container: ContainerDep, start: str | None, end: str | None, interval: str
) -> tuple[datetime, datetime]:
    """The range of a series: at most ``max_range_days`` by day, ``max_hourly_range_days`` by hour.

    A series answers one row per bucket, so its range is bounded; a longer one is a 400 naming
    ``to``. A missing end is filled in with the longest range allowed: no ``to`` ends that long
    after ``from``, no ``from`` starts that long before ``to``, and neither ends with the
    current bucket. The answer's ``from`` and ``to`` say which range was used.
    """
    settings = container.settings
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
    container: ContainerDep,
    caller: Caller,
    group_by: list[str],
    start: str | None,
    end: str | None,
    interval: str | None = None,
) -> dict:
    if interval is None:
        lo, hi = window(start, end)
    else:
        lo, hi = series_window(container, start, end, interval)
    with container.reading("usage") as curs:
        rows = usage.totals(curs, caller.tenant_filter(), group_by, lo, hi, interval=interval)
    return {"currency": "EUR", "from": lo, "to": hi, "data": [shape(r) for r in rows]}


@router.get("/usage")
def usage_totals(
    caller: Caller,
    container: ContainerDep,
    group_by: Literal["tenant", "key", "model", "instance"] = "tenant",
    start: str | None = FromQuery,
    end: str | None = ToQuery,
) -> dict:
    """Requests, successes, failures, tokens and cost, grouped by tenant, key, model or instance."""
    return _totals(container, caller, [group_by], start, end)


@router.get("/usage/keys")
def usage_by_key(
    caller: Caller,
    container: ContainerDep,
    start: str | None = FromQuery,
    end: str | None = ToQuery,
) -> dict:
    """Usage per key."""
    return _totals(container, caller, ["key"], start, end)


@router.get("/usage/models")
def usage_by_model(
    caller: Caller,
    container: ContainerDep,
    start: str | None = FromQuery,
    end: str | None = ToQuery,
) -> dict:
    """Usage per model."""
    return _totals(container, caller, ["model"], start, end)


@router.get("/usage/vendors")
def usage_by_vendor(
    caller: Caller,
    container: ContainerDep,
    start: str | None = FromQuery,
    end: str | None = ToQuery,
) -> dict:
    """Usage per vendor and model, with success and failure counts (seed 003)."""
    result = _totals(container, caller, ["model"], start, end)
    for row in result["data"]:
        row["vendor"] = vendor_of(row["model"])
    result["data"].sort(key=lambda r: (r["vendor"], r["model"]))
    return result


@router.get("/usage/series")
def usage_series(
    caller: Caller,
    container: ContainerDep,
    interval: Literal["hour", "day"] = "day",
    start: str | None = FromQuery,
    end: str | None = ToQuery,
) -> dict:
    """Usage over time, per hour or per day."""
    return _totals(container, caller, [], start, end, interval=interval)


@router.get("/usage/series/tenants")
def usage_series_tenants(
    caller: Caller,
    container: ContainerDep,
    interval: Literal["hour", "day"] = "day",
    start: str | None = FromQuery,
    end: str | None = ToQuery,
) -> dict:
    """Usage over time per tenant."""
    return _totals(container, caller, ["tenant"], start, end, interval=interval)


@router.get("/costs")
def cost_breakdown(
    caller: Caller,
    container: ContainerDep,
    group_by: Literal["model", "key", "instance", "tenant"] = "model",
    start: str | None = FromQuery,
    end: str | None = ToQuery,
) -> dict:
    """EUR cost, tokens versus GPU time, by model, key, instance or tenant."""
    lo, hi = window(start, end)
    with container.reading("usage", "costs") as curs:
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
