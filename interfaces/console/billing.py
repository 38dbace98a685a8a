"""Billing: the API's summary for any range of days, with its breakdowns, and the same as CSV.

The CSV is one long table with a ``section`` column (``total``, ``day``, ``model``, ``key``,
``instance``) rather than a block per breakdown: one header, so that a spreadsheet's filter or
``csv.DictReader`` reads it whole. ``item`` is the row's date, model, key id or instance id
(``start/end`` on the total row), ``name`` the key's or instance's name where known, and the
amounts are the API's decimal strings, untouched. A name that a spreadsheet would read as a
formula (an instance's label may start with ``=``) is written with a leading ``'``.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from application.auth import Principal
from application.errors import ApplicationError
from domain.base import DomainError
from domain.timewindow import check_span, day_range
from interfaces.console.overview import month_of
from interfaces.console.web import (
    SignedOut,
    _container,
    check_tenant,
    failed,
    principal_of,
    router,
    tenant_page,
    to_login,
)
from projections.readmodels import instances, keys
from projections.reports import billing

UNNAMED = "(a user or deleted key)"
CSV_COLUMNS = (
    "section",
    "item",
    "name",
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "token_cost",
    "gpu_cost",
    "total_cost",
    "gpu_seconds",
)


def days_asked(start: str | None, end: str | None, now: datetime) -> tuple[str, str]:
    """The range's two dates as given; this month (1st to 1st of the next) when left out."""
    first, after = month_of(now)
    return start or first.date().isoformat(), end or after.date().isoformat()


def billing_of(request: Request, tenant_id: UUID, start: str, end: str) -> dict[str, Any]:
    """``GET /team-billing/summary``'s answer (same limits, same function), with the names of
    its keys and instances."""
    container = _container(request)
    lo, hi = day_range(start, end)
    check_span(lo, hi, container.settings.max_range_days, "start", "end")
    with container.gate.reading("usage", "costs") as curs:
        summary = billing.summary(curs, tenant_id, lo, hi, datetime.now(UTC))
    with container.gate.reading("keys", "instances") as curs:
        key_names = {str(k["id"]): k["name"] for k in keys.list_keys(curs, tenant_id, 500, None)[0]}
        rows = instances.list_instances(curs, tenant_id, 500, None)[0]
        instance_names = {str(i["id"]): i["name"] or "" for i in rows}
    return {
        "summary": summary,
        "by_key": [{**k, "name": key_names.get(k["key_id"], UNNAMED)} for k in summary["by_key"]],
        "by_instance": [
            {**i, "name": instance_names.get(i["instance_id"], "")} for i in summary["by_instance"]
        ],
    }


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def inert(name: str) -> str:
    """A name a spreadsheet shows as text, never runs as a formula (CSV injection)."""
    return "'" + name if name.startswith(FORMULA_STARTS) else name


def csv_text(bill: dict[str, Any]) -> str:
    """The summary as one CSV table (see the module's docstring)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_COLUMNS, extrasaction="ignore", lineterminator="\r\n")
    writer.writeheader()
    s = bill["summary"]
    span = f"{s['start'].date().isoformat()}/{s['end'].date().isoformat()}"
    writer.writerow({**s, "section": "total", "item": span})
    for d in s["by_day"]:
        writer.writerow({**d, "section": "day", "item": d["date"]})
    for m in s["by_model"]:
        writer.writerow({**m, "section": "model", "item": m["model"]})
    for k in bill["by_key"]:
        writer.writerow({**k, "section": "key", "item": k["key_id"], "name": inert(k["name"])})
    for i in bill["by_instance"]:
        row = {**i, "section": "instance", "item": i["instance_id"], "name": inert(i["name"])}
        writer.writerow(row)
    return out.getvalue()


@router.get("/t/{tenant_id}/billing")
async def billing_page(
    request: Request, tenant_id: UUID, start: str | None = None, end: str | None = None
) -> Response:
    """The summary of ``[start 00:00Z, end 00:00Z)``, this month by default."""
    first, last = days_asked(start, end, datetime.now(UTC))

    def read(caller: Principal, tenant: dict[str, Any]) -> dict[str, Any]:
        return {"start": first, "end": last, **billing_of(request, tenant_id, first, last)}

    return await tenant_page(request, tenant_id, "billing.html", "billing", read)


@router.get("/t/{tenant_id}/billing.csv")
async def billing_csv(
    request: Request, tenant_id: UUID, start: str | None = None, end: str | None = None
) -> Response:
    """The page's summary as a CSV download (signed in, like every page)."""
    try:
        caller = await principal_of(request)
    except SignedOut:
        return to_login()
    first, last = days_asked(start, end, datetime.now(UTC))

    def build() -> str:
        check_tenant(request, caller, tenant_id)
        return csv_text(billing_of(request, tenant_id, first, last))

    try:
        text = await run_in_threadpool(build)
    except (ApplicationError, DomainError) as e:
        return failed(request, e, caller)
    filename = f"hostplane-billing-{tenant_id}-{first}-{last}.csv"
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )
