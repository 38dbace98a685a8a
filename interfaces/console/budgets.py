"""Budgets: each one's spend against its limit as a bar, its thresholds and period; create,
change and delete them with the same schemas and use cases as the /api/v1 budget routes."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import Request
from starlette.responses import Response

from application.auth import Principal
from application.errors import NotFoundError
from interfaces.console.forms import validated
from interfaces.console.web import _container, router, tenant_action, tenant_page
from interfaces.http.routes.budgets import read_budget
from interfaces.http.schemas import BudgetCreate, BudgetUpdate
from projections.readmodels import budgets, keys

PERIODS = ("daily", "weekly", "monthly", "total")


def thresholds_of(text: str) -> list[str]:
    """``"0.5, 0.8, 1"`` as the list the schema reads; blank means none."""
    return [t.strip() for t in text.replace(";", ",").split(",") if t.strip()]


def budget_fields(form: dict[str, str]) -> dict[str, Any]:
    return {
        "limit_eur": form.get("limit_eur", "").strip(),
        "period": form.get("period", ""),
        "thresholds": thresholds_of(form.get("thresholds", "")),
    }


@router.get("/t/{tenant_id}/budgets")
async def budgets_page(request: Request, tenant_id: UUID) -> Response:
    """Each budget as ``GET /budgets/{id}`` answers it: its window's spend, remainder, state."""
    container = _container(request)

    def read(caller: Principal, tenant: dict[str, Any]) -> dict[str, Any]:
        with container.gate.reading("budgets") as curs:
            rows = budgets.list_budgets(curs, tenant_id, 200, None)[0]
        with container.gate.reading("keys") as curs:
            tenant_keys = keys.list_keys(curs, tenant_id, 500, None)[0]
        names = {k["id"]: k["name"] for k in tenant_keys}
        shown = []
        for row in rows:
            budget = read_budget(container.gate, caller, row["id"])
            shown.append({"b": budget, "key_name": names.get(budget.key_id)})
        return {"budgets": shown, "keys": tenant_keys, "periods": PERIODS}

    return await tenant_page(request, tenant_id, "budgets.html", "budgets", read)


@router.post("/t/{tenant_id}/budgets")
async def budget_create(request: Request, tenant_id: UUID) -> Response:
    """``POST /budgets`` from a form: the same schema, the same use case."""
    commands = _container(request).budgets

    def act(caller: Principal, form: dict[str, str]) -> str:
        key_id = form.get("key_id") or None
        body = validated(
            BudgetCreate, {"tenant_id": tenant_id, "key_id": key_id, **budget_fields(form)}
        )
        commands.set_budget(caller, **body.model_dump())
        return f"/console/t/{tenant_id}/budgets"

    return await tenant_action(request, tenant_id, act)


def owned_budget(request: Request, caller: Principal, tenant_id: UUID, budget_id: UUID) -> None:
    """Another tenant's budget, or one of this tenant's under another's address, is not found."""
    budget = _container(request).budgets.get_budget_for(caller, budget_id)
    if budget.tenant_id != tenant_id:
        raise NotFoundError("budget", budget_id)


@router.post("/t/{tenant_id}/budgets/{budget_id}")
async def budget_change(request: Request, tenant_id: UUID, budget_id: UUID) -> Response:
    """``PUT /budgets/{id}`` from a form: limit, period and thresholds replaced."""
    commands = _container(request).budgets

    def act(caller: Principal, form: dict[str, str]) -> str:
        owned_budget(request, caller, tenant_id, budget_id)
        body = validated(BudgetUpdate, budget_fields(form))
        commands.change_budget(caller, budget_id, **body.model_dump())
        return f"/console/t/{tenant_id}/budgets"

    return await tenant_action(request, tenant_id, act)


@router.post("/t/{tenant_id}/budgets/{budget_id}/delete")
async def budget_delete(request: Request, tenant_id: UUID, budget_id: UUID) -> Response:
    """``DELETE /budgets/{id}`` from a form."""
    commands = _container(request).budgets

    def act(caller: Principal, form: dict[str, str]) -> str:
        owned_budget(request, caller, tenant_id, budget_id)
        commands.delete_budget(caller, budget_id)
        return f"/console/t/{tenant_id}/budgets"

    return await tenant_action(request, tenant_id, act)
