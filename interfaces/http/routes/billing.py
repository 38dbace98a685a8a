"""Billing by date range (seed 001), balance and credits (seed 002)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Path

from application.errors import NotFoundError
from domain.timewindow import check_span, day_range
from interfaces.db.readgate import ReadGate
from interfaces.http.deps import Caller, Gate, SettingsDep, TenantsDep
from interfaces.http.openapi import DATE
from interfaces.http.schemas import Strict
from projections.readmodels import tenants
from projections.reports import billing

router = APIRouter(tags=["billing"])

Day = Annotated[
    str, Path(description="A date, YYYY-MM-DD (its midnight UTC).", json_schema_extra=DATE)
]


class CreditsIn(Strict):
    amount_eur: Decimal


def check_tenant(gate: ReadGate, caller: Caller, tenant_id: UUID) -> None:
    with gate.reading("tenants") as curs:
        if tenants.get_tenant(curs, tenant_id, caller.tenant_filter()) is None:
            raise NotFoundError("tenant", tenant_id)


@router.get("/team-billing/summary/{tenant_id}/{start}/{end}")
def billing_summary(
    tenant_id: UUID, start: Day, end: Day, caller: Caller, gate: Gate, settings: SettingsDep
) -> dict:
    """Billing for ``[start 00:00Z, end 00:00Z)``; the same date twice is an empty range.

    A range has at most ``HOSTPLANE_MAX_RANGE_DAYS`` days (400): the answer has one row a day.
    """
    lo, hi = day_range(start, end)
    check_span(lo, hi, settings.max_range_days, "start", "end")
    check_tenant(gate, caller, tenant_id)
    with gate.reading("usage", "costs") as curs:
        return billing.summary(curs, tenant_id, lo, hi, datetime.now(UTC))


@router.get("/tenants/{tenant_id}/balance")
def balance(tenant_id: UUID, caller: Caller, gate: Gate) -> dict:
    """Credits minus spend, in EUR."""
    check_tenant(gate, caller, tenant_id)
    with gate.reading("usage", "costs") as curs:
        amount = billing.balance(curs, tenant_id, datetime.now(UTC))
    return {"current_balance": billing.money(amount), "currency": "EUR"}


@router.post("/tenants/{tenant_id}/credits")
def add_credits(
    tenant_id: UUID, body: CreditsIn, caller: Caller, commands: TenantsDep, gate: Gate
) -> dict:
    """Add prepaid credits to a tenant (admin)."""
    commands.add_credits(caller, tenant_id, body.amount_eur)
    return balance(tenant_id, caller, gate)
