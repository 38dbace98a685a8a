"""BYOK routes: a tenant's own upstream keys, as logical instances (seeds 000 and 003)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response

from application.idempotency import Created
from domain.instance import Instance
from interfaces.db.readgate import ReadGate
from interfaces.http.deps import Caller, Gate, Once, UpstreamsDep
from interfaces.http.routes.common import CursorQuery, LimitQuery, found, scoped_listing
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


def read_upstream(gate: ReadGate, caller: Caller, upstream_id: UUID) -> ByokPublic:
    with gate.reading("instances") as curs:
        row = instances.get_instance(curs, upstream_id, caller.tenant_filter())
    if row is not None and row["kind"] != "byok":
        row = None
    return ByokPublic(**public(found(row, "byok upstream", upstream_id)))


@router.post("/byok", status_code=201, response_model=ByokPublic)
def attach_upstream(
    body: ByokCreate,
    caller: Caller,
    commands: UpstreamsDep,
    gate: Gate,
    once: Once,
    request: Request,
    response: Response,
) -> dict:
    """Attach an upstream provider key as a logical instance. The key is never shown again."""

    def create() -> ByokPublic:
        upstream_id = commands.attach_upstream(caller, **body.model_dump())
        return read_upstream(gate, caller, upstream_id)

    def recover(done: Created) -> ByokPublic:
        return read_upstream(gate, caller, once.created_id(done, Instance))

    return once(caller, request, response, body, create, recover)


@router.get("/byok", response_model=Page[ByokPublic])
def list_upstreams(
    caller: Caller,
    gate: Gate,
    tenant_id: UUID | None = Query(None, description="Only this tenant's upstreams."),
    limit: int = LimitQuery,
    cursor: str | None = CursorQuery,
) -> dict:
    """BYOK upstreams, newest first: vendor, label, is_active, created_at, last four."""
    with gate.reading("instances") as curs:
        listed = scoped_listing(
            caller,
            tenant_id,
            lambda t: instances.list_instances(curs, t, limit, cursor, kind="byok"),
        )
    listed["data"] = [public(r) for r in listed["data"]]
    return listed


@router.get("/byok/{upstream_id}", response_model=ByokPublic)
def get_upstream(upstream_id: UUID, caller: Caller, gate: Gate) -> ByokPublic:
    return read_upstream(gate, caller, upstream_id)


@router.delete("/byok/{upstream_id}", response_model=ByokPublic)
def detach_upstream(
    upstream_id: UUID, caller: Caller, commands: UpstreamsDep, gate: Gate
) -> ByokPublic:
    """Deactivate the upstream key for good; it stays listed with ``is_active: false``."""
    commands.detach_upstream(caller, upstream_id)
    return read_upstream(gate, caller, upstream_id)
