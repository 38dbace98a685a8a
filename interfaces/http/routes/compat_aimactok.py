"""AimActok's BYOK platform API as seed 003 documents it (``/keys``, ``/usage``), translated
onto the same use cases and read models as /api/v1.

A user's keys are its tenant's BYOK upstreams (``/api/v1/byok``); usage is ``/api/v1/usage/
vendors``. Chat goes through the gateway at ``/v1/chat/completions`` (by ``model``, by
``vendor`` or with ``X-Key-Id``). Another user's key, or an id that names no key of the
caller's, is a 403, as the seed's error table says (and never tells which of the two it was).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from application.errors import ForbiddenError, NotFoundError
from application.idempotency import Created
from domain.instance import Instance
from interfaces.db.readgate import ReadGate
from interfaces.http.deps import Caller, Gate, Once, UpstreamsDep
from interfaces.http.openapi import also_answers
from interfaces.http.routes import byok, usage
from interfaces.http.routes.common import found, scoped_listing
from interfaces.http.schemas import OWNING_TENANT, Deleted, Strict
from projections.readmodels import instances

router = APIRouter(tags=["AimActok (seed 003)"])

# The vendors the seed supports (hostplane's BYOK also knows mistral; AimActok doesn't).
Vendor = Literal["openai", "anthropic", "google", "deepseek", "qwen", "moonshot", "minimax"]
MAX_LISTED = 500
TenantQuery = Query(None, description=OWNING_TENANT)
VENDORS_TOTALS = next(t for t in usage.TOTALS if t.path == "/usage/vendors")


class AimKeyCreate(Strict):
    vendor: Vendor
    label: str = Field(description="A label, e.g. 'Personal OpenAI'.")
    api_key: str = Field(description="The vendor's API key; encrypted, never returned.")


class AimKey(BaseModel):
    id: UUID
    vendor: str
    label: str
    is_active: bool
    created_at: datetime
    key_last4: str = Field(description="The last four characters of the vendor's key.")


def read_key(gate: ReadGate, caller: Caller, key_id: UUID) -> AimKey:
    with gate.reading("instances") as curs:
        row = instances.get_instance(curs, key_id, caller.tenant_filter())
    if row is not None and row["kind"] != "byok":
        row = None
    return AimKey(**byok.public(found(row, "key", key_id)))


# 404: a ``tenant_id`` that names no tenant (of the caller's).
@router.post("/keys", status_code=201, response_model=AimKey, responses=also_answers(404))
def add_key(
    body: AimKeyCreate,
    caller: Caller,
    commands: UpstreamsDep,
    gate: Gate,
    once: Once,
    request: Request,
    response: Response,
    tenant_id: UUID | None = TenantQuery,
) -> AimKey:
    """Add a vendor API key. The plaintext key is never returned after this."""

    def create() -> AimKey:
        key_id = commands.attach_upstream(
            caller, tenant_id, name=body.label, upstream=body.vendor, external_key=body.api_key
        )
        return read_key(gate, caller, key_id)

    def recover(done: Created) -> AimKey:
        return read_key(gate, caller, once.created_id(done, Instance))

    return once(caller, request, response, body, create, recover)


@router.get("/keys", response_model=list[AimKey])
def list_keys(
    caller: Caller, gate: Gate, tenant_id: UUID | None = TenantQuery
) -> list[dict[str, Any]]:
    """Your keys, newest first: vendor, label, is_active, created_at (never the key)."""
    with gate.reading("instances") as curs:
        rows = scoped_listing(
            caller,
            tenant_id,
            lambda t: instances.list_instances(curs, t, MAX_LISTED, None, kind="byok"),
        )["data"]
    return [byok.public(r) for r in rows]


@router.delete("/keys/{key_id}", response_model=Deleted)
def delete_key(key_id: str, caller: Caller, commands: UpstreamsDep) -> Deleted:
    """Delete one of your keys for good (403 for another user's key)."""
    not_yours = ForbiddenError(f"key {key_id!r} is not one of your active keys")
    try:
        upstream_id = UUID(key_id)
    except ValueError:
        raise not_yours from None
    try:
        commands.detach_upstream(caller, upstream_id)
    except NotFoundError:
        raise not_yours from None
    return Deleted(id=upstream_id)


@router.get("/usage")
def usage_stats(
    caller: Caller,
    gate: Gate,
    start: str | None = usage.FromQuery,
    end: str | None = usage.ToQuery,
) -> dict:
    """Your usage by vendor and model, with success and failure counts (``from``/``to``
    optional). As ``GET /api/v1/usage/vendors``."""
    return usage.totals_route(VENDORS_TOTALS)(caller, gate, start, end)
