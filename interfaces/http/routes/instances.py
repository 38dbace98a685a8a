"""Instance routes (seed 000's lifecycle)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response
from psycopg import Cursor

from application.idempotency import Created
from domain.instance import Instance
from interfaces.db.readgate import ReadGate
from interfaces.http.deps import Caller, Gate, InstancesDep, Once, ProvisioningDep
from interfaces.http.openapi import also_answers
from interfaces.http.routes.common import CursorQuery, LimitQuery, found, scoped_listing
from interfaces.http.schemas import (
    InstanceApiKey,
    InstanceCreate,
    InstanceLogs,
    InstancePublic,
    InstanceTestResult,
    Page,
)
from projections.readmodels import instances
from projections.reports import billing

router = APIRouter(tags=["instances"])


def with_costs(curs: Cursor[Any], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows with their GPU cost so far (a running instance is rated up to now)."""
    costs = billing.instance_costs(
        curs, [(r["tenant_id"], r["id"]) for r in rows], datetime.now(UTC)
    )
    return [{**r, "cost_eur": billing.money(costs[r["id"]])} for r in rows]


def read_instance(gate: ReadGate, caller: Caller, instance_id: UUID) -> InstancePublic:
    with gate.reading("instances", "costs") as curs:
        row = found(
            instances.get_instance(curs, instance_id, caller.tenant_filter()),
            "instance",
            instance_id,
        )
        return InstancePublic(**with_costs(curs, [row])[0])


@router.get("/instances", response_model=Page[InstancePublic])
def list_instances(
    caller: Caller,
    gate: Gate,
    tenant_id: UUID | None = Query(None, description="Only this tenant's instances."),
    limit: int = LimitQuery,
    cursor: str | None = CursorQuery,
) -> dict:
    """List instances (GPU and BYOK) with status, region, model, endpoint and cost so far."""
    with gate.reading("instances", "costs") as curs:
        listed = scoped_listing(
            caller, tenant_id, lambda t: instances.list_instances(curs, t, limit, cursor)
        )
        listed["data"] = with_costs(curs, listed["data"])
        return listed


@router.post("/instances", status_code=201, response_model=InstancePublic)
def deploy_instance(
    body: InstanceCreate,
    caller: Caller,
    commands: InstancesDep,
    gate: Gate,
    once: Once,
    request: Request,
    response: Response,
) -> dict:
    """Request a deployment. The instance starts ``pending``."""

    def create() -> InstancePublic:
        instance_id = commands.deploy_instance(caller, **body.model_dump())
        return read_instance(gate, caller, instance_id)

    def recover(done: Created) -> InstancePublic:
        return read_instance(gate, caller, once.created_id(done, Instance))

    return once(caller, request, response, body, create, recover)


@router.get("/instances/{instance_id}", response_model=InstancePublic)
def get_instance(instance_id: UUID, caller: Caller, gate: Gate) -> InstancePublic:
    """Get one instance with its status history."""
    return read_instance(gate, caller, instance_id)


@router.delete(
    "/instances/{instance_id}", response_model=InstancePublic, responses=also_answers(502)
)
def destroy_instance(
    instance_id: UUID, caller: Caller, commands: InstancesDep, gate: Gate
) -> InstancePublic:
    """Destroy an instance and release its GPU. Irreversible; it stays in history and billing."""
    commands.destroy_instance(caller, instance_id)
    return read_instance(gate, caller, instance_id)


@router.get(
    "/instances/{instance_id}/api-key", response_model=InstanceApiKey, responses=also_answers(409)
)
def instance_api_key(instance_id: UUID, caller: Caller, commands: InstancesDep) -> InstanceApiKey:
    """The instance's own inference key (seed 000 returns it on demand)."""
    return InstanceApiKey(api_key=commands.reveal_instance_key(caller, instance_id))


@router.post(
    "/instances/{instance_id}/refresh", response_model=InstancePublic, responses=also_answers(502)
)
def refresh_instance(
    instance_id: UUID, caller: Caller, provisioning: ProvisioningDep, gate: Gate
) -> InstancePublic:
    """Re-sync the instance's status from its provider now."""
    provisioning.refresh_instance(caller, instance_id)
    return read_instance(gate, caller, instance_id)


@router.post("/instances/{instance_id}/retry", response_model=InstancePublic)
def retry_instance(
    instance_id: UUID, caller: Caller, provisioning: ProvisioningDep, gate: Gate
) -> InstancePublic:
    """Deploy a failed instance again (409 unless it is ``failed``)."""
    provisioning.retry_instance(caller, instance_id)
    return read_instance(gate, caller, instance_id)


@router.post(
    "/instances/{instance_id}/test", response_model=InstanceTestResult, responses=also_answers(502)
)
def test_instance(instance_id: UUID, caller: Caller, provisioning: ProvisioningDep) -> dict:
    """Send a health-check chat completion to the running instance; the result is recorded."""
    check = provisioning.test_instance(caller, instance_id)
    return {"instance_id": instance_id, **asdict(check)}


@router.get(
    "/instances/{instance_id}/logs", response_model=InstanceLogs, responses=also_answers(409, 502)
)
def instance_logs(
    instance_id: UUID,
    caller: Caller,
    provisioning: ProvisioningDep,
    limit: int = Query(100, ge=1, le=1000, description="How many of the latest lines."),
) -> dict:
    """The provider's most recent log lines for this instance, oldest first."""
    return {
        "instance_id": instance_id,
        "data": provisioning.instance_logs(caller, instance_id, limit),
    }
