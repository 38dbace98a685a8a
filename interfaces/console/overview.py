"""The overview: this month's spend against budgets, requests and tokens per day, top models and
keys."""

from __future__ import annotations

from calendar import monthrange
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from fastapi import Request
from starlette.responses import Response

from application.auth import Principal
from interfaces.console.web import _container, router, tenant_page
from interfaces.http.routes.budgets import read_budget
from projections.readmodels import budgets, keys
from projections.reports import billing


def month_of(now: datetime) -> tuple[datetime, datetime]:
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return start, start + timedelta(days=monthrange(now.year, now.month)[1])


def chart(days: list[dict[str, Any]]) -> dict[str, Any]:
    """Bars of requests per day, scaled to the busiest day (the SVG's geometry)."""
    width, height = 24, 120
    top = max((d["requests"] for d in days), default=0) or 1
    bars = []
    for i, d in enumerate(days):
        h = round(d["requests"] / top * height)
        tokens = d["prompt_tokens"] + d["completion_tokens"]
        bars.append({**d, "tokens": tokens, "x": i * width, "y": height - h, "h": h})
    return {"bars": bars, "width": width * max(len(days), 1), "height": height, "bar": width - 4}


def top(rows: list[dict[str, Any]], n: int = 5) -> list[dict[str, Any]]:
    """The ``n`` rows that cost most, then the busiest."""
    return sorted(rows, key=lambda r: (-Decimal(r["total_cost"]), -r["requests"]))[:n]


@router.get("/t/{tenant_id}/overview")
async def overview(request: Request, tenant_id: UUID) -> Response:
    container = _container(request)

    def read(caller: Principal, tenant: dict[str, Any]) -> dict[str, Any]:
        now = datetime.now(UTC)
        start, end = month_of(now)
        with container.gate.reading("usage", "costs", "budgets") as curs:
            summary = billing.summary(curs, tenant_id, start, end, now)
            rows = budgets.list_budgets(curs, tenant_id, 50, None)[0]
        with container.gate.reading("keys") as curs:
            names = {str(k["id"]): k["name"] for k in keys.list_keys(curs, tenant_id, 500, None)[0]}
        kept = [read_budget(container.gate, caller, r["id"]) for r in rows]
        top_keys = [
            {**k, "name": names.get(k["key_id"], "(a user or deleted key)")}
            for k in top(summary["by_key"])
        ]
        return {
            "summary": summary,
            "budgets": kept,
            "chart": chart(summary["by_day"]),
            "top_models": top(summary["by_model"]),
            "top_keys": top_keys,
        }

    return await tenant_page(request, tenant_id, "overview.html", "overview", read)
