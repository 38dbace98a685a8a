"""BYOK: the tenant's own upstream keys, listed as GET /api/v1/byok shows them (vendor, label,
last four characters, never the key), attached and deactivated through the same use cases."""

from __future__ import annotations

from typing import Any, get_args
from uuid import UUID

from fastapi import Request
from starlette.responses import Response

from application.auth import Principal
from application.errors import NotFoundError
from interfaces.console.forms import naming_the_field, validated
from interfaces.console.web import _container, router, tenant_action, tenant_page
from interfaces.http.routes.byok import public
from interfaces.http.schemas import ByokCreate
from projections.readmodels import instances

VENDORS: tuple[str, ...] = get_args(ByokCreate.model_fields["upstream"].annotation)


@router.get("/t/{tenant_id}/byok")
async def byok_list(request: Request, tenant_id: UUID) -> Response:
    gate = _container(request).gate

    def read(caller: Principal, tenant: dict[str, Any]) -> dict[str, Any]:
        with gate.reading("instances") as curs:
            rows = instances.list_instances(curs, tenant_id, 200, None, kind="byok")[0]
        return {"upstreams": [public(r) for r in rows], "vendors": VENDORS}

    return await tenant_page(request, tenant_id, "byok.html", "byok", read)


@router.post("/t/{tenant_id}/byok")
async def byok_attach(request: Request, tenant_id: UUID) -> Response:
    """Attach an upstream key; the answer is a redirect, so the key is never echoed back."""
    commands = _container(request).upstreams

    def act(caller: Principal, form: dict[str, str]) -> str:
        fields = {k: form.get(k, "") for k in ("name", "upstream", "external_key")}
        body = validated(ByokCreate, {"tenant_id": tenant_id, **fields})
        with naming_the_field():
            commands.attach_upstream(caller, **body.model_dump())
        return f"/console/t/{tenant_id}/byok"

    return await tenant_action(request, tenant_id, act)


@router.post("/t/{tenant_id}/byok/{upstream_id}/delete")
async def byok_detach(request: Request, tenant_id: UUID, upstream_id: UUID) -> Response:
    commands = _container(request).upstreams

    def act(caller: Principal, form: dict[str, str]) -> str:
        if commands.get_upstream_for(caller, upstream_id).tenant_id != tenant_id:
            raise NotFoundError("byok upstream", upstream_id)
        commands.detach_upstream(caller, upstream_id)
        return f"/console/t/{tenant_id}/byok"

    return await tenant_action(request, tenant_id, act)
