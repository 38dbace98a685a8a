"""Tenant routes."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Request, Response

from application.idempotency import Created
from domain.tenant import Tenant
from interfaces.db.readgate import ReadGate
from interfaces.http.deps import (
    Caller,
    Gate,
    OffboardingDep,
    Once,
    ReplaysDep,
    TenantsDep,
)
from interfaces.http.openapi import also_answers
from interfaces.http.routes.common import CursorQuery, LimitQuery, found, listing
from interfaces.http.schemas import (
    GroupUpdate,
    Page,
    QuotaUpdate,
    TenantCreate,
    TenantPublic,
    TenantUpdate,
    WeightUpdate,
)
from interfaces.http.times import AsOfQuery, parse_time
from projections.readmodels import tenants

router = APIRouter(tags=["tenants"])


def read_tenant(gate: ReadGate, caller: Caller, tenant_id: UUID) -> TenantPublic:
    with gate.reading("tenants") as curs:
        row = tenants.get_tenant(curs, tenant_id, caller.tenant_filter())
    return TenantPublic(**found(row, "tenant", tenant_id))


@router.get("/tenants", response_model=Page[TenantPublic])
def list_tenants(
    caller: Caller,
    gate: Gate,
    limit: int = LimitQuery,
    cursor: str | None = CursorQuery,
) -> dict:
    """List tenants, newest first (a tenant's own key sees only its tenant)."""
    with gate.reading("tenants") as curs:
        return listing(lambda: tenants.list_tenants(curs, caller.tenant_filter(), limit, cursor))


# 404: a ``group`` that doesn't exist.
@router.post("/tenants", status_code=201, response_model=TenantPublic, responses=also_answers(404))
def create_tenant(
    body: TenantCreate,
    caller: Caller,
    commands: TenantsDep,
    gate: Gate,
    once: Once,
    request: Request,
    response: Response,
) -> dict:
    """Create a tenant (admin only). Names are unique."""

    def create() -> TenantPublic:
        tenant_id = commands.create_tenant(caller, **body.model_dump())
        return read_tenant(gate, caller, tenant_id)

    def recover(done: Created) -> TenantPublic:
        return read_tenant(gate, caller, once.created_id(done, Tenant))

    return once(caller, request, response, body, create, recover)


@router.get("/tenants/{tenant_id}", response_model=TenantPublic)
def get_tenant(
    tenant_id: UUID,
    caller: Caller,
    gate: Gate,
    replays: ReplaysDep,
    as_of: str | None = AsOfQuery,
) -> TenantPublic:
    """Get one tenant; with ``as_of``, the tenant as it was then, replayed from its events."""
    at = parse_time(as_of, "as_of")
    if at is not None:
        return TenantPublic(**replays.tenant_as_of(caller, tenant_id, at))
    return read_tenant(gate, caller, tenant_id)


@router.delete("/tenants/{tenant_id}", response_model=TenantPublic, responses=also_answers(502))
def offboard_tenant(
    tenant_id: UUID, caller: Caller, offboarding: OffboardingDep, gate: Gate
) -> TenantPublic:
    """Offboard a tenant: destroy its instances, delete its keys and budgets. History stays."""
    offboarding.offboard_tenant(caller, tenant_id)
    return read_tenant(gate, caller, tenant_id)


@router.patch("/tenants/{tenant_id}", response_model=TenantPublic)
def update_tenant(
    tenant_id: UUID, body: TenantUpdate, caller: Caller, commands: TenantsDep, gate: Gate
) -> TenantPublic:
    """Change the tenant's own settings (``on_demand_boot``): the admin or the tenant's key."""
    if body.on_demand_boot is not None:
        commands.set_on_demand_boot(caller, tenant_id, body.on_demand_boot)
    return read_tenant(gate, caller, tenant_id)


@router.patch("/tenants/{tenant_id}/weight", response_model=TenantPublic)
def change_weight(
    tenant_id: UUID, body: WeightUpdate, caller: Caller, commands: TenantsDep, gate: Gate
) -> TenantPublic:
    """Change the tenant's fair-share weight (admin only)."""
    commands.change_tenant_weight(caller, tenant_id, body.weight)
    return read_tenant(gate, caller, tenant_id)


@router.put("/tenants/{tenant_id}/quota", response_model=TenantPublic)
def change_quota(
    tenant_id: UUID, body: QuotaUpdate, caller: Caller, commands: TenantsDep, gate: Gate
) -> TenantPublic:
    """Set the tenant's tokens-per-minute quota (admin only; null removes it)."""
    commands.change_tenant_quota(caller, tenant_id, body.tokens_per_minute)
    return read_tenant(gate, caller, tenant_id)


@router.patch("/tenants/{tenant_id}/group", response_model=TenantPublic)
def assign_group(
    tenant_id: UUID, body: GroupUpdate, caller: Caller, commands: TenantsDep, gate: Gate
) -> TenantPublic:
    """Assign the tenant to a fair-share group (admin only; null removes it)."""
    commands.assign_tenant_group(caller, tenant_id, body.group)
    return read_tenant(gate, caller, tenant_id)
