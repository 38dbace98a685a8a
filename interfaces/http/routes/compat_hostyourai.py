"""HostYourAI's Management API as seed 000 documents it (``/api/dashboard``, ``/api/router``),
translated onto the same use cases and read models as /api/v1.

Instances are the /api/v1 instances (GPU deployments and BYOK upstreams); router keys are the
tenant's router keys; the catalog is the price book, with ``warm`` from the instances read
model. The inference endpoint is the gateway's ``/api/v1/chat/completions``.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field, StrictBool, StrictInt
from starlette.concurrency import run_in_threadpool

from application.errors import NotFoundError
from application.idempotency import Created
from domain.apikey import ApiKey
from domain.instance import Instance
from interfaces.db.readgate import ReadGate
from interfaces.http.creating import shown_once
from interfaces.http.deps import (
    Caller,
    Gate,
    InstancesDep,
    KeysDep,
    Once,
    ProvisioningDep,
    UpstreamsDep,
)
from interfaces.http.openapi import also_answers
from interfaces.http.routes import instances as v1
from interfaces.http.routes.common import scoped_listing
from interfaces.http.schemas import (
    MAX_ALLOWED_MODELS,
    MAX_IP_ALLOWLIST,
    OWNING_TENANT,
    RPM_LIMIT,
    ByokCreate,
    InstanceApiKey,
    InstanceCreate,
    InstanceLogs,
    InstancePublic,
    InstanceTestResult,
    KeyPublic,
    Strict,
)
from interfaces.http.shown import key_shown
from projections.readmodels import instances, keys, pricebook

router = APIRouter(prefix="/api", tags=["HostYourAI (seed 000)"])

# The most rows a list answers: the seed's lists are plain arrays, without pages.
MAX_LISTED = 500
TenantQuery = Query(None, description="Only this tenant's (the admin token's filter).")


class RouterKeyCreate(Strict):
    name: str = Field(min_length=1, max_length=63)
    sovereignty_mode: StrictBool = False
    allowed_models: list[str] | None = Field(None, max_length=MAX_ALLOWED_MODELS)
    expires_at: datetime | None = None
    ip_allowlist: list[str] = Field(default_factory=list, max_length=MAX_IP_ALLOWLIST)
    rpm_limit: StrictInt | None = Field(None, description=RPM_LIMIT)


class RouterKeyCreated(KeyPublic):
    api_key: str = Field(description="The router key itself. Shown once; store it now.")


class RouterKeyRevoked(BaseModel):
    id: UUID
    revoked: bool = True


class CatalogModel(BaseModel):
    slug: str
    display_name: str
    modality: str
    context_length: int
    input_eur_per_mtok: Decimal = Field(description="EUR per million input tokens.")
    output_eur_per_mtok: Decimal = Field(description="EUR per million output tokens.")
    serveable: bool = Field(description="Whether it can run on an EU GPU.")
    warm: bool = Field(description="Whether a running instance of it exists now.")
    vendor: str | None = None


# -- instances -----------------------------------------------------------------------------


def listed_instance(gate: ReadGate, caller: Caller, instance_id: UUID) -> InstancePublic:
    """An instance of the caller's that is still listed: a destroyed one's row is gone here
    (the seed's DELETE "removes the instance row"), though /api/v1 keeps it as history."""
    instance = v1.read_instance(gate, caller, instance_id)
    if instance.status == "destroyed":
        raise NotFoundError("instance", instance_id)
    return instance


@router.get("/dashboard/instances", response_model=list[InstancePublic])
def list_instances(
    caller: Caller, gate: Gate, tenant_id: UUID | None = TenantQuery
) -> list[dict[str, Any]]:
    """Your instances (GPU and BYOK), newest first, with status, region, model, endpoint and
    cost so far. Destroyed instances are not listed (they stay in /api/v1's history)."""
    with gate.reading("instances", "costs") as curs:
        rows = scoped_listing(
            caller,
            tenant_id,
            lambda t: instances.list_instances(curs, t, MAX_LISTED, None, live=True),
        )["data"]
        return v1.with_costs(curs, rows)


@router.post("/dashboard/deploy", status_code=201, response_model=InstancePublic)
def deploy(
    body: InstanceCreate,
    caller: Caller,
    commands: InstancesDep,
    provisioning: ProvisioningDep,
    gate: Gate,
    once: Once,
    request: Request,
    response: Response,
) -> InstancePublic:
    """Deploy a model. The GPU is asked for at once, so the instance is returned
    ``deploying`` (``failed`` with the provider's reason if it refused); poll it until
    ``running``."""

    def create() -> InstancePublic:
        instance_id = commands.deploy_instance(caller, **body.model_dump())
        # The provisioning jobs' first step, taken now: the seed returns it deploying.
        provisioning.advance_quietly(instance_id)
        return v1.read_instance(gate, caller, instance_id)

    def recover(done: Created) -> InstancePublic:
        return v1.read_instance(gate, caller, once.created_id(done, Instance))

    return once(caller, request, response, body, create, recover)


@router.get("/dashboard/instances/{instance_id}", response_model=InstancePublic)
def get_instance(instance_id: UUID, caller: Caller, gate: Gate) -> InstancePublic:
    """One instance: status (pending, deploying, running, stopped, failed), endpoint, cost."""
    return listed_instance(gate, caller, instance_id)


@router.get(
    "/dashboard/instances/{instance_id}/api-key",
    response_model=InstanceApiKey,
    responses=also_answers(409),
)
def instance_api_key(
    instance_id: UUID, caller: Caller, commands: InstancesDep, gate: Gate
) -> InstanceApiKey:
    """The instance's own key for the OpenAI-compatible endpoint (``/api/v1/chat/completions``)."""
    listed_instance(gate, caller, instance_id)
    return v1.instance_api_key(instance_id, caller, commands)


@router.delete(
    "/dashboard/instances/{instance_id}", response_model=InstancePublic, responses=also_answers(502)
)
def destroy_instance(
    instance_id: UUID, caller: Caller, commands: InstancesDep, gate: Gate
) -> InstancePublic:
    """Destroy the instance's GPU at the provider; it leaves the list. Irreversible."""
    listed_instance(gate, caller, instance_id)
    return v1.destroy_instance(instance_id, caller, commands, gate)


@router.post(
    "/dashboard/instances/{instance_id}/refresh",
    response_model=InstancePublic,
    responses=also_answers(502),
)
def refresh_instance(
    instance_id: UUID, caller: Caller, provisioning: ProvisioningDep, gate: Gate
) -> InstancePublic:
    """Re-sync the instance's status from its provider."""
    listed_instance(gate, caller, instance_id)
    return v1.refresh_instance(instance_id, caller, provisioning, gate)


@router.post("/dashboard/instances/{instance_id}/retry", response_model=InstancePublic)
def retry_instance(
    instance_id: UUID, caller: Caller, provisioning: ProvisioningDep, gate: Gate
) -> InstancePublic:
    """Retry a failed deploy (409 unless the instance is ``failed``)."""
    listed_instance(gate, caller, instance_id)
    return v1.retry_instance(instance_id, caller, provisioning, gate)


@router.post(
    "/dashboard/instances/{instance_id}/test",
    response_model=InstanceTestResult,
    responses=also_answers(502),
)
def test_instance(
    instance_id: UUID, caller: Caller, provisioning: ProvisioningDep, gate: Gate
) -> dict:
    """Fire a health-check chat at the running instance; the result is recorded."""
    listed_instance(gate, caller, instance_id)
    return v1.test_instance(instance_id, caller, provisioning)


@router.get(
    "/dashboard/instances/{instance_id}/logs",
    response_model=InstanceLogs,
    responses=also_answers(409, 502),
)
def instance_logs(
    instance_id: UUID,
    caller: Caller,
    provisioning: ProvisioningDep,
    gate: Gate,
    limit: int = Query(100, ge=1, le=1000, description="How many of the latest lines."),
) -> dict:
    """Recent logs of the instance's model server, oldest first."""
    listed_instance(gate, caller, instance_id)
    return v1.instance_logs(instance_id, caller, provisioning, limit)


@router.post("/dashboard/byok", status_code=201, response_model=InstancePublic)
def attach_byok(
    body: ByokCreate,
    caller: Caller,
    commands: UpstreamsDep,
    gate: Gate,
    once: Once,
    request: Request,
    response: Response,
) -> InstancePublic:
    """Attach an upstream provider's key as a logical instance, routed like any other. The
    key is encrypted at rest and never returned or logged."""

    def create() -> InstancePublic:
        upstream_id = commands.attach_upstream(caller, **body.model_dump())
        return v1.read_instance(gate, caller, upstream_id)

    def recover(done: Created) -> InstancePublic:
        return v1.read_instance(gate, caller, once.created_id(done, Instance))

    return once(caller, request, response, body, create, recover)


# -- router keys ---------------------------------------------------------------------------


@router.get("/router/keys", response_model=list[KeyPublic])
def list_router_keys(
    caller: Caller, gate: Gate, tenant_id: UUID | None = TenantQuery
) -> list[dict[str, Any]]:
    """Your router keys (for inference), newest first; never their secrets."""
    with gate.reading("keys") as curs:
        return scoped_listing(
            caller, tenant_id, lambda t: keys.list_keys(curs, t, MAX_LISTED, None, kind="router")
        )["data"]


# 404: with the admin token, a ``tenant_id`` that names no tenant.
@router.post(
    "/router/keys",
    status_code=201,
    response_model=RouterKeyCreated,
    responses=also_answers(404),
)
async def create_router_key(
    body: RouterKeyCreate,
    caller: Caller,
    commands: KeysDep,
    once: Once,
    request: Request,
    response: Response,
    tenant_id: UUID | None = Query(None, description=OWNING_TENANT),
) -> RouterKeyCreated:
    """Create a router key. The answer holds its plaintext (``api_key``), this once."""

    def create() -> RouterKeyCreated:
        key, secret = commands.issue_key(
            caller, caller.owning_tenant(tenant_id), kind="router", **body.model_dump()
        )
        return RouterKeyCreated(**key_shown(key), api_key=secret)

    def recover(done: Created) -> RouterKeyCreated:
        key = commands.get_key_for(caller, once.created_id(done, ApiKey))
        return RouterKeyCreated(**key_shown(key), api_key=shown_once(done))

    return await run_in_threadpool(once, caller, request, response, body, create, recover)


@router.delete("/router/keys/{key_id}", response_model=RouterKeyRevoked)
def revoke_router_key(key_id: UUID, caller: Caller, commands: KeysDep) -> RouterKeyRevoked:
    """Revoke a router key for good (with its budgets)."""
    if commands.get_key_for(caller, key_id).kind != "router":
        raise NotFoundError("router key", key_id)
    commands.delete_key(caller, key_id)
    return RouterKeyRevoked(id=key_id)


@router.get("/router/catalog", response_model=list[CatalogModel])
def catalog(caller: Caller, gate: Gate) -> list[dict[str, Any]]:
    """Every model of the catalog: slug, display name, modality, context length, EUR per
    million tokens in and out, ``serveable`` (can run on an EU GPU) and ``warm`` (one of your
    instances of it is running now; any tenant's, for the admin token)."""
    with gate.reading("pricebook", "instances") as curs:
        models = pricebook.list_models(curs)
        warm = instances.running_models(curs, caller.tenant_filter())
    return [{**m, "slug": m["id"], "warm": m["id"] in warm} for m in models]
