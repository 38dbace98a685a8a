"""Usage and costs over a chosen range: a stacked chart per hour or day, split by model, key,
instance or vendor, and a table per split value. The numbers are the API's own: the same
read-model queries as ``GET /usage`` (and ``/usage/series``), shaped by the same function, and
for instances the GPU cost of ``GET /costs``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from fastapi import Request
from psycopg import Cursor
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from application.errors import ApplicationError
from domain.base import DomainError, InvalidValueError
from interfaces.console.usage_chart import (
    METRICS,
    SPLITS,
    UsageQuery,
    form_of,
    parse_query,
    series,
)
from interfaces.console.web import (
    SignedOut,
    _container,
    check_tenant,
    failed,
    principal_of,
    render,
    router,
    to_login,
)
from interfaces.db.readgate import ReadGate
from interfaces.http.routes.usage import shape
from projections.readmodels import instances, keys, usage
from projections.reports import billing

PAGE = 500  # rows per page when reading the tenant's key and instance names
COUNTS = ("requests", "successes", "failures", "prompt_tokens", "completion_tokens")
NOTHING = {**dict.fromkeys(COUNTS, 0), "cost": "0.00"}


def _all(
    list_page: Callable[..., tuple[list[dict[str, Any]], str | None]],
    curs: Cursor[Any],
    tenant_id: UUID,
) -> list[dict[str, Any]]:
    """Every page of a tenant's listing: a name is wanted for whichever id the usage names."""
    rows, cursor = list_page(curs, tenant_id, PAGE, None)
    while cursor is not None:
        more, cursor = list_page(curs, tenant_id, PAGE, cursor)
        rows += more
    return rows


def labeller(gate: ReadGate, tenant_id: UUID, split: str) -> Callable[[Any], str]:
    """How a split value reads on the page: a key's name, an instance's name and model; an id
    the read models no longer know (a deleted key, a user's token) by its first characters."""
    if split == "key":
        with gate.reading("keys") as curs:
            names = {str(k["id"]): k["name"] for k in _all(keys.list_keys, curs, tenant_id)}
        return lambda v: names.get(v) or f"deleted key or user {str(v)[:8]}"
    if split == "instance":
        with gate.reading("instances") as curs:
            rows = _all(instances.list_instances, curs, tenant_id)
        names = {str(i["id"]): f"{i['name'] or i['model_id']} ({i['kind']})" for i in rows}
        return lambda v: "no instance" if v is None else names.get(v, str(v)[:8])
    if split == "vendor":
        return lambda v: v or "none named (GPU instance)"
    return str


def read(gate: ReadGate, tenant_id: UUID, q: UsageQuery) -> dict[str, Any]:
    """The chart's series and the table's rows of the page's tenant (never the caller's scope:
    the admin looks at one tenant at a time)."""
    group = [q.split]
    with gate.reading("usage", "costs") as curs:
        rows = usage.totals(curs, tenant_id, group, q.start, q.end, interval=q.interval)
        by_bucket = [shape(r) for r in rows]
        table = [shape(r) for r in usage.totals(curs, tenant_id, group, q.start, q.end)]
        gpu = []
        if q.split == "instance":
            now = datetime.now(UTC)
            gpu = billing.cost_breakdown(curs, tenant_id, "instance", q.start, q.end, now)
    label_of = labeller(gate, tenant_id, q.split)
    column = SPLITS[q.split]
    costs = {g["instance"]: g for g in gpu}
    for row in table:
        row["value"], row["label"] = row[column], label_of(row[column])
        if q.split == "instance":
            row |= costs.pop(row[column], {"gpu_cost": "0.00", "total_cost": row["cost"]})
    # An instance that ran (and cost GPU time) without answering a request still costs.
    for ident, g in costs.items():
        if g["gpu_cost"] != "0.00":
            table.append({"value": ident, "label": label_of(ident), **NOTHING, **g})
    gpu_total = billing.money(sum((Decimal(g["gpu_cost"]) for g in gpu), Decimal(0)))
    return {"chart": series(q, by_bucket, label_of), "table": table, "gpu_total": gpu_total}


@router.get("/t/{tenant_id}/usage")
async def usage_page(request: Request, tenant_id: UUID) -> Response:
    """The usage page; a bad range or split is the page again with a 400 and the reason."""
    try:
        caller = await principal_of(request)
    except SignedOut:
        return to_login()
    container = _container(request)
    form = form_of(request.query_params, datetime.now(UTC))

    def build() -> tuple[dict[str, Any], int]:
        tenant = check_tenant(request, caller, tenant_id)  # another tenant's: 404 first
        context = {"tenant": tenant, "page": "usage", "form": form, "metrics": METRICS}
        try:
            q = parse_query(form, container.settings.max_range_days)
        except InvalidValueError as e:
            return {**context, "error": str(e)}, 400
        return {**context, "query": q, **read(container.gate, tenant_id, q)}, 200

    try:
        context, status = await run_in_threadpool(build)
    except (ApplicationError, DomainError) as e:
        return failed(request, e, caller)
    return render(request, "usage.html", context, caller, status)
