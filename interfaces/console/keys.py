"""Keys: create (the secret shown once), disable, enable, edit restrictions, delete."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from application.auth import Principal
from application.errors import ApplicationError, NotFoundError
from domain.base import DomainError
from interfaces.console.forms import (
    items,
    naming_the_field,
    optional_int,
    optional_utc_time,
    validated,
)
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
    tenant_page,
    to_login,
)
from interfaces.http.schemas import KeyCreate, KeyUpdate
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


# -- restrictions: what PATCH /api/v1/keys/{id} may change, as a form ---------------------


def key_of(request: Request, caller: Principal, tenant_id: UUID, key_id: UUID) -> dict[str, Any]:
    """The tenant's live key, as GET /api/v1/keys/{id} reads it; any other key is not found."""
    with _container(request).gate.reading("keys") as curs:
        row = keys.get_key(curs, key_id, caller.tenant_filter())
    if row is None or row["tenant_id"] != tenant_id:
        raise NotFoundError("key", key_id)
    return row


def utc_field(at: datetime | None) -> str:
    """A time as a ``datetime-local`` field shows it (UTC, to the second)."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S") if at else ""


def restrictions_of(form: dict[str, str]) -> dict[str, Any]:
    """The form's fields with the types of PATCH /keys/{id}'s JSON body. An empty list of
    models is "every model" (null), as an empty expiry is "never" and an empty limit "none"."""
    models = items(form.get("allowed_models", ""))
    return {
        "name": form.get("name", ""),
        "allowed_models": models or None,
        "sovereignty_mode": "sovereignty_mode" in form,
        "expires_at": optional_utc_time(form.get("expires_at", "")),
        "ip_allowlist": items(form.get("ip_allowlist", "")),
        "rpm_limit": optional_int(form.get("rpm_limit", "")),
    }


def changed(body: KeyUpdate, row: dict[str, Any]) -> dict[str, Any]:
    """The fields that differ from the key as the page showed it: the others are left out,
    as a PATCH leaves them out (an unchanged past expiry is no new one)."""
    shown = {**row, "expires_at": row["expires_at"] and row["expires_at"].replace(microsecond=0)}
    return {field: value for field, value in body.changes().items() if value != shown[field]}


@router.get("/t/{tenant_id}/keys/{key_id}")
async def key_edit(request: Request, tenant_id: UUID, key_id: UUID) -> Response:
    def read(caller: Principal, tenant: dict[str, Any]) -> dict[str, Any]:
        key = key_of(request, caller, tenant_id, key_id)
        return {
            "key": key,
            "expires": utc_field(key["expires_at"]),
            "saved": request.query_params.get("saved") == "1",
        }

    return await tenant_page(request, tenant_id, "key.html", "keys", read)


@router.post("/t/{tenant_id}/keys/{key_id}")
async def key_change(request: Request, tenant_id: UUID, key_id: UUID) -> Response:
    commands = _container(request).keys

    def act(caller: Principal, form: dict[str, str]) -> str:
        row = key_of(request, caller, tenant_id, key_id)
        body = validated(KeyUpdate, restrictions_of(form))
        with naming_the_field():
            commands.change_key(caller, key_id, changed(body, row))
        return f"/console/t/{tenant_id}/keys/{key_id}?saved=1"

    return await tenant_action(request, tenant_id, act)
