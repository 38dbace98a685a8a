"""Budget routes."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response

from application.idempotency import Created
from domain.budget import Budget, budget_state
from domain.timewindow import period_window
from interfaces.db.readgate import ReadGate
from interfaces.http.deps import BudgetsDep, Caller, Gate, Once
from interfaces.http.routes.common import CursorQuery, LimitQuery, found, scoped_listing
from interfaces.http.schemas import BudgetCreate, BudgetPublic, BudgetUpdate, Deleted, Page
from projections.readmodels import budgets
from projections.reports import billing

router = APIRouter(tags=["budgets"])


def read_budget(gate: ReadGate, caller: Caller, budget_id: UUID) -> BudgetPublic:
    """One budget with its current window, spend, remainder and state."""
    now = datetime.now(UTC)
    with gate.reading("budgets", "usage", "costs") as curs:
        row = found(
            budgets.get_budget(curs, budget_id, caller.tenant_filter()), "budget", budget_id
        )
        start, end = period_window(row["period"], now)
        spent = billing.spent(curs, row["tenant_id"], row["key_id"], start, end, now)
    return BudgetPublic(
        **row,
        period_start=start,
        period_end=end,
        spent=spent,
        remaining=max(row["limit_eur"] - spent, Decimal(0)),
        state=budget_state(row["limit_eur"], row["thresholds"], spent),
    )


@router.get("/budgets", response_model=Page[BudgetPublic])
def list_budgets(
    caller: Caller,
    gate: Gate,
    tenant_id: UUID | None = Query(None, description="Only this tenant's budgets."),
    limit: int = LimitQuery,
    cursor: str | None = CursorQuery,
) -> dict:
    """List budgets, newest first."""
    with gate.reading("budgets") as curs:
        return scoped_listing(
            caller, tenant_id, lambda t: budgets.list_budgets(curs, t, limit, cursor)
        )


@router.post("/budgets", status_code=201, response_model=BudgetPublic)
def create_budget(
    body: BudgetCreate,
    caller: Caller,
    commands: BudgetsDep,
    gate: Gate,
    once: Once,
    request: Request,
    response: Response,
) -> dict:
    """Set a budget for a tenant, or with ``key_id`` for one key."""

    def create() -> BudgetPublic:
        budget_id = commands.set_budget(caller, **body.model_dump())
        return read_budget(gate, caller, budget_id)

    def recover(done: Created) -> BudgetPublic:
        return read_budget(gate, caller, once.created_id(done, Budget))

    return once(caller, request, response, body, create, recover)


@router.get("/budgets/{budget_id}", response_model=BudgetPublic)
def get_budget(budget_id: UUID, caller: Caller, gate: Gate) -> BudgetPublic:
    """Get one budget."""
    return read_budget(gate, caller, budget_id)


@router.put("/budgets/{budget_id}", response_model=BudgetPublic)
def update_budget(
    budget_id: UUID, body: BudgetUpdate, caller: Caller, commands: BudgetsDep, gate: Gate
) -> BudgetPublic:
    """Replace a budget's limit, period and thresholds."""
    commands.change_budget(caller, budget_id, **body.model_dump())
    return read_budget(gate, caller, budget_id)


@router.delete("/budgets/{budget_id}", response_model=Deleted)
def delete_budget(budget_id: UUID, caller: Caller, commands: BudgetsDep) -> Deleted:
    """Delete a budget."""
    commands.delete_budget(caller, budget_id)
    return Deleted(id=budget_id)
