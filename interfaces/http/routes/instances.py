"""Instance routes (seed 000's lifecycle)."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Query, Request, Response

from interfaces.http.deps import Caller, ContainerDep
from interfaces.http.routes.common import (
    CursorQuery,
    LimitQuery,
    create_once,
    found,
    scoped_listing,
)
from interfaces.http.schemas import InstanceApiKey, InstanceCreate, InstancePublic, Page
from projections import instances

router = APIRouter(tags=["instances"])


def read_instance(container: ContainerDep, caller: Caller, instance_id: UUID) -> InstancePublic:
    with container.reading("instances") as curs:
        row = instances.get_instance(curs, instance_id, caller.tenant_filter())
    return InstancePublic(**found(row, "instance", instance_id))


@router.get("/instances", response_model=Page[InstancePublic])
def list_instances(
    caller: Caller,
    container: ContainerDep,
    tenant_id: UUID | None = Query(None, description="Only this tenant's instances."),
    limit: int = LimitQuery,
    cursor: str | None = CursorQuery,
) -> dict:
    """List instances with status, region, model and endpoint, newest first."""
    with container.reading("instances") as curs:
        return scoped_listing(
            caller, tenant_id, lambda t: instances.list_instances(curs, t, limit, cursor)
        )


@router.post("/instances", status_code=201, response_model=InstancePublic)
def deploy_instance(
    body: InstanceCreate,
    caller: Caller,
    container: ContainerDep,
    request: Request,
    response: Response,
) -> dict:
    """Request a deployment. The instance starts ``pending``."""

    def create() -> InstancePublic:
        instance_id = container.app.deploy_instance(caller, **body.model_dump())
        return read_instance(container, caller, instance_id)

    return create_once(container, caller, request, response, body, create)


@router.get("/instances/{instance_id}", response_model=InstancePublic)
def get_instance(instance_id: UUID, caller: Caller, container: ContainerDep) -> InstancePublic:
    """Get one instance with its status history."""
    return read_instance(container, caller, instance_id)


@router.delete("/instances/{instance_id}", response_model=InstancePublic)
def destroy_instance(instance_id: UUID, caller: Caller, container: ContainerDep) -> InstancePublic:
    """Destroy an instance. Irreversible; it stays in history and billing."""
    container.app.destroy_instance(caller, instance_id)
    return read_instance(container, caller, instance_id)


@router.get("/instances/{instance_id}/api-key", response_model=InstanceApiKey)
def instance_api_key(instance_id: UUID, caller: Caller, container: ContainerDep) -> InstanceApiKey:
    """The instance's own inference key (seed 000 returns it on demand)."""
    return InstanceApiKey(api_key=container.app.reveal_instance_key(caller, instance_id))
