"""Keys: create (the secret shown once), disable, enable, delete."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from application.auth import Principal
from application.errors import ApplicationError, NotFoundError
from domain.base import DomainError
from interfaces.console.web import (
    SignedOut,
    _container,
    check_tenant,
    failed,
    principal_of,
    render,
    router,
    signed_in_form,
    tenant_action,
    to_login,
)
from interfaces.http.schemas import KeyCreate
from projections.readmodels import keys


def keys_page(
    request: Request, caller: Principal, tenant_id: UUID, created: dict[str, Any] | None = None
) -> Response:
    tenant = check_tenant(request, caller, tenant_id)
    with _container(request).gate.reading("keys") as curs:
        rows = keys.list_keys(curs, tenant_id, 200, None)[0]
    context = {"tenant": tenant, "keys": rows, "created": created, "page": "keys"}
    return render(request, "keys.html", context, caller, 201 if created else 200)


@router.get("/t/{tenant_id}/keys")
async def keys_list(request: Request, tenant_id: UUID) -> Response:
    try:
        caller = await principal_of(request)
    except SignedOut:
        return to_login()
    try:
        return await run_in_threadpool(keys_page, request, caller, tenant_id)
    except (ApplicationError, DomainError) as e:
        return failed(request, e, caller)


@router.post("/t/{tenant_id}/keys")
async def key_create(request: Request, tenant_id: UUID) -> Response:
    signed = await signed_in_form(request)
    if isinstance(signed, Response):
        return signed
    caller, form = signed

    def create() -> Response:
        check_tenant(request, caller, tenant_id)
        body = KeyCreate(name=form.get("name", ""), kind=form.get("kind") or "router")
        key, secret = _container(request).keys.issue_key(caller, tenant_id, **body.model_dump())
        return keys_page(request, caller, tenant_id, {"name": key.name, "secret": secret})

    try:
        return await run_in_threadpool(create)
    except (ApplicationError, DomainError) as e:
        return failed(request, e, caller)
    except ValueError:  # the form's fields, as KeyCreate validates them
        message = "a key needs a name of 1 to 63 characters"
        return render(request, "error.html", {"status": 400, "message": message}, caller, 400)


async def key_action(request: Request, tenant_id: UUID, key_id: UUID, action: str) -> Response:
    commands = _container(request).keys

    def act(caller: Principal, form: dict[str, str]) -> str:
        key = commands.get_key_for(caller, key_id)
        if key.tenant_id != tenant_id:
            raise NotFoundError("key", key_id)
        if action == "delete":
            commands.delete_key(caller, key_id)
        else:
            commands.set_key_disabled(caller, key_id, action == "disable")
        return f"/console/t/{tenant_id}/keys"

    return await tenant_action(request, tenant_id, act)


@router.post("/t/{tenant_id}/keys/{key_id}/disable")
async def key_disable(request: Request, tenant_id: UUID, key_id: UUID) -> Response:
    return await key_action(request, tenant_id, key_id, "disable")


@router.post("/t/{tenant_id}/keys/{key_id}/enable")
async def key_enable(request: Request, tenant_id: UUID, key_id: UUID) -> Response:
    return await key_action(request, tenant_id, key_id, "enable")


@router.post("/t/{tenant_id}/keys/{key_id}/delete")
async def key_delete(request: Request, tenant_id: UUID, key_id: UUID) -> Response:
    return await key_action(request, tenant_id, key_id, "delete")
