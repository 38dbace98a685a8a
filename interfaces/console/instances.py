"""Instances: the tenant's GPU deployments with their status, deploy, and one instance's page
with its live status, logs, a test call and destroy, over the same use cases and read models as
/api/v1/instances. The status updates without a reload: ``static/instances.js`` polls
``status.json`` (session-checked like every page) until the instance settles."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from application.auth import Principal
from application.errors import ApplicationError, NotFoundError
from domain.base import DomainError
from interfaces.console.forms import naming_the_field, validated
from interfaces.console.web import (
    SignedOut,
    _container,
    check_tenant,
    principal_of,
    router,
    status_of,
    tenant_action,
    tenant_page,
)
from interfaces.http.routes.instances import read_instance, with_costs
from interfaces.http.schemas import InstanceCreate, InstanceLogs, InstancePublic
from projections.readmodels import instances, pricebook

# Statuses that don't change without someone acting (the page reloads then): polling stops.
SETTLED = ("running", "failed", "stopped", "destroyed")
LOG_LINES = 100  # as GET /instances/{id}/logs gives by default


def instance_of(request: Request, caller: Principal, tenant_id: UUID, instance_id: UUID) -> Any:
    """The instance as GET /api/v1/instances/{id} answers; another tenant's is not found."""
    instance = read_instance(_container(request).gate, caller, instance_id)
    if instance.tenant_id != tenant_id:
        raise NotFoundError("instance", instance_id)
    return instance


def logs_of(request: Request, caller: Principal, instance: InstancePublic) -> dict[str, Any]:
    """The provider's latest lines (GET /instances/{id}/logs), or why there are none: a
    provider that can't answer leaves the rest of the page readable."""
    if instance.kind != "gpu":
        return {"logs": [], "logs_error": "a BYOK upstream has no logs"}
    try:
        lines = _container(request).provisioning.instance_logs(caller, instance.id, LOG_LINES)
    except (ApplicationError, DomainError) as e:
        return {"logs": [], "logs_error": str(e)}
    return {"logs": lines, "logs_error": None}


def choices(request: Request) -> dict[str, Any]:
    """What a deploy may name: the catalog's serveable models and the priced GPU types and
    regions (a deploy of another is refused, as the API refuses it)."""
    with _container(request).gate.reading("pricebook") as curs:
        models = [m for m in pricebook.list_models(curs) if m["serveable"]]
        rates = pricebook.list_gpu_rates(curs)
    providers = ["simulated", *sorted(_container(request).providers.named)]
    return {
        "models": models,
        "rates": rates,
        "types": sorted({r["instance_type"] for r in rates}),
        "regions": sorted({r["region"] for r in rates}),
        "providers": providers,
    }


@router.get("/t/{tenant_id}/instances")
async def instance_list(request: Request, tenant_id: UUID) -> Response:
    gate = _container(request).gate

    def read(caller: Principal, tenant: dict[str, Any]) -> dict[str, Any]:
        with gate.reading("instances", "costs") as curs:
            rows = instances.list_instances(curs, tenant_id, 200, None, kind="gpu")[0]
            listed = with_costs(curs, rows)
        return {"instances": listed, **choices(request)}

    return await tenant_page(request, tenant_id, "instances.html", "instances", read)


@router.post("/t/{tenant_id}/instances")
async def instance_deploy(request: Request, tenant_id: UUID) -> Response:
    commands = _container(request).instances

    def act(caller: Principal, form: dict[str, str]) -> str:
        fields = {k: form.get(k, "") for k in ("model_id", "region", "instance_type")}
        provider = form.get("provider", "").strip() or "simulated"
        body = validated(InstanceCreate, {"tenant_id": tenant_id, "provider": provider, **fields})
        with naming_the_field():
            instance_id = commands.deploy_instance(caller, **body.model_dump())
        return f"/console/t/{tenant_id}/instances/{instance_id}"

    return await tenant_action(request, tenant_id, act)


@router.get("/t/{tenant_id}/instances/{instance_id}")
async def instance_page(request: Request, tenant_id: UUID, instance_id: UUID) -> Response:
    def read(caller: Principal, tenant: dict[str, Any]) -> dict[str, Any]:
        instance = instance_of(request, caller, tenant_id, instance_id)
        return {
            "instance": instance,
            "settled": SETTLED,
            "tested": request.query_params.get("tested") == "1",
            **logs_of(request, caller, instance),
        }

    return await tenant_page(request, tenant_id, "instance.html", "instances", read)


@router.get("/t/{tenant_id}/instances/{instance_id}/status.json")
async def instance_status(request: Request, tenant_id: UUID, instance_id: UUID) -> Response:
    """What the instance page shows that changes by itself: status, history, endpoint, logs."""
    try:
        caller = await principal_of(request)
    except SignedOut:
        return problem(401, "signed out: sign in again")

    def read() -> dict[str, Any]:
        check_tenant(request, caller, tenant_id)
        instance = instance_of(request, caller, tenant_id, instance_id)
        logs = logs_of(request, caller, instance)
        fields = ("status", "status_reason", "endpoint_url", "history", "last_check")
        return {
            **instance.model_dump(mode="json", include=set(fields)),
            "logs": InstanceLogs(instance_id=instance_id, data=logs["logs"]).model_dump(
                mode="json"
            )["data"],
            "logs_error": logs["logs_error"],
            "settled": instance.status in SETTLED,
        }

    try:
        answer = await run_in_threadpool(read)
    except (ApplicationError, DomainError) as e:
        return problem(status_of(e), str(e))
    return JSONResponse(answer, headers={"Cache-Control": "no-store"})


def problem(status: int, message: str) -> Response:
    return JSONResponse({"error": {"message": message}}, status, {"Cache-Control": "no-store"})


async def instance_action(
    request: Request, tenant_id: UUID, instance_id: UUID, action: str
) -> Response:
    container = _container(request)

    def act(caller: Principal, form: dict[str, str]) -> str:
        instance_of(request, caller, tenant_id, instance_id)
        page = f"/console/t/{tenant_id}/instances/{instance_id}"
        if action == "test":  # recorded on the instance: the page shows it as last_check
            container.provisioning.test_instance(caller, instance_id)
            return page + "?tested=1"
        container.instances.destroy_instance(caller, instance_id)
        return page

    return await tenant_action(request, tenant_id, act)


@router.post("/t/{tenant_id}/instances/{instance_id}/test")
async def instance_test(request: Request, tenant_id: UUID, instance_id: UUID) -> Response:
    return await instance_action(request, tenant_id, instance_id, "test")


@router.post("/t/{tenant_id}/instances/{instance_id}/destroy")
async def instance_destroy(request: Request, tenant_id: UUID, instance_id: UUID) -> Response:
    return await instance_action(request, tenant_id, instance_id, "destroy")
