"""Budget routes."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response

from application.idempotency import Created
from domain.budget import Budget, budget_state
from domain.timewindow import period_window
from interfaces.http.deps import Caller, ContainerDep
from interfaces.http.routes.common import (
    CursorQuery,
    LimitQuery,
    create_once,
    created_id,
    found,
    scoped_listing,
)
from interfaces.http.schemas import BudgetCreate, BudgetPublic, BudgetUpdate, Deleted, Page
from projections.readmodels import budgets
from projections.reports import billing

router = APIRouter(tags=["budgets"])


def read_budget(container: ContainerDep, caller: Caller, budget_id: UUID) -> BudgetPublic:
    """One budget with its current window, spend, remainder and state."""
    now = datetime.now(UTC)
    with container.reading("budgets", "usage", "costs") as curs:
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
    container: ContainerDep,
    tenant_id: UUID | None = Query(None, description="Only this tenant's budgets."),
    limit: int = LimitQuery,
    cursor: str | None = CursorQuery,
) -> dict:
    """List budgets, newest first."""
    with container.reading("budgets") as curs:
        return scoped_listing(
            caller, tenant_id, lambda t: budgets.list_budgets(curs, t, limit, cursor)
        )


@router.post("/budgets", status_code=201, response_model=BudgetPublic)
def create_budget(
    body: BudgetCreate,
    caller: Caller,
    container: ContainerDep,
    request: Request,
    response: Response,
) -> dict:
    """Set a budget for a tenant, or with ``key_id`` for one key."""

    def create() -> BudgetPublic:
        budget_id = container.app.set_budget(caller, **body.model_dump())
        return read_budget(container, caller, budget_id)

    def recover(done: Created) -> BudgetPublic:
        return read_budget(container, caller, created_id(container, done, Budget))

    return create_once(container, caller, request, response, body, create, recover)


@router.get("/budgets/{budget_id}", response_model=BudgetPublic)
def get_budget(budget_id: UUID, caller: Caller, container: ContainerDep) -> BudgetPublic:
    """Get one budget."""
    return read_budget(container, caller, budget_id)


@router.put("/budgets/{budget_id}", response_model=BudgetPublic)
def update_budget(
    budget_id: UUID, body: BudgetUpdate, caller: Caller, container: ContainerDep
) -> BudgetPublic:
    """Replace a budget's limit, period and thresholds."""
    container.app.change_budget(caller, budget_id, **body.model_dump())
    return read_budget(container, caller, budget_id)


@router.delete("/budgets/{budget_id}", response_model=Deleted)
def delete_budget(budget_id: UUID, caller: Caller, container: ContainerDep) -> Deleted:
    """Delete a budget."""
    container.app.delete_budget(caller, budget_id)
    return Deleted(id=budget_id)
