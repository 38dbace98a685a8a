"""BYOK routes: a tenant's own upstream keys, as logical instances (seeds 000 and 003)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response

from application.idempotency import Created
from domain.instance import Instance
from interfaces.http.deps import Caller, ContainerDep
from interfaces.http.routes.common import (
    CursorQuery,
    LimitQuery,
    create_once,
    created_id,
    found,
    scoped_listing,
)
from interfaces.http.schemas import ByokCreate, ByokPublic, Page
from projections.readmodels import instances

router = APIRouter(tags=["byok"])


def public(row: dict[str, Any]) -> dict[str, Any]:
    """Seed 003's view of an upstream key: vendor, label, is_active, last four characters."""
    return {
        "id": row["id"],
        "tenant_id": row["tenant_id"],
        "name": row["name"],
        "label": row["name"],
        "vendor": row["provider"],
        "upstream": row["provider"],
        "key_last4": row["key_last4"],
        "is_active": row["status"] != "destroyed",
        "status": row["status"],
        "endpoint_url": row["endpoint_url"],
        "created_at": row["created_at"],
    }


def read_upstream(container: ContainerDep, caller: Caller, upstream_id: UUID) -> ByokPublic:
    with container.reading("instances") as curs:
        row = instances.get_instance(curs, upstream_id, caller.tenant_filter())
    if row is not None and row["kind"] != "byok":
        row = None
    return ByokPublic(**public(found(row, "byok upstream", upstream_id)))


@router.post("/byok", status_code=201, response_model=ByokPublic)
def attach_upstream(
    body: ByokCreate,
    caller: Caller,
    container: ContainerDep,
    request: Request,
    response: Response,
) -> dict:
    """Attach an upstream provider key as a logical instance. The key is never shown again."""

    def create() -> ByokPublic:
        upstream_id = container.app.attach_upstream(caller, **body.model_dump())
        return read_upstream(container, caller, upstream_id)

    def recover(done: Created) -> ByokPublic:
        return read_upstream(container, caller, created_id(container, done, Instance))

    return create_once(container, caller, request, response, body, create, recover)


@router.get("/byok", response_model=Page[ByokPublic])
def list_upstreams(
    caller: Caller,
    container: ContainerDep,
    tenant_id: UUID | None = Query(None, description="Only this tenant's upstreams."),
    limit: int = LimitQuery,
    cursor: str | None = CursorQuery,
) -> dict:
    """BYOK upstreams, newest first: vendor, label, is_active, created_at, last four."""
    with container.reading("instances") as curs:
        listed = scoped_listing(
            caller,
            tenant_id,
            lambda t: instances.list_instances(curs, t, limit, cursor, kind="byok"),
        )
    listed["data"] = [public(r) for r in listed["data"]]
    return listed


@router.get("/byok/{upstream_id}", response_model=ByokPublic)
def get_upstream(upstream_id: UUID, caller: Caller, container: ContainerDep) -> ByokPublic:
    return read_upstream(container, caller, upstream_id)


@router.delete("/byok/{upstream_id}", response_model=ByokPublic)
def detach_upstream(upstream_id: UUID, caller: Caller, container: ContainerDep) -> ByokPublic:
    """Deactivate the upstream key for good; it stays listed with ``is_active: false``."""
    container.app.detach_upstream(caller, upstream_id)
    return read_upstream(container, caller, upstream_id)
