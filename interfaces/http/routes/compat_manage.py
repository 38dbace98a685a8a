"""Seed 002's Management API (``/manage``), translated onto the same use cases and read models
as /api/v1: keys by name, the project configuration, the balance.

The "project" is the tenant of the management key; with the admin token, ``tenant_id`` names it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field, StrictBool, StrictFloat, StrictInt
from starlette.concurrency import run_in_threadpool

from application.auth import Principal
from application.errors import NotFoundError
from application.idempotency import Created
from domain.apikey import ApiKey
from domain.projectconfig import DEFAULT_ALLOW_OVERWRITE, SETTINGS, ProjectConfig
from interfaces.db.readgate import ReadGate
from interfaces.http.creating import shown_once
from interfaces.http.deps import Caller, Gate, KeysDep, Once, ProjectConfigsDep
from interfaces.http.openapi import also_answers
from interfaces.http.routes.billing import check_tenant
from interfaces.http.routes.common import listing
from interfaces.http.schemas import KeyPublic, Strict
from interfaces.http.shown import key_shown
from projections.readmodels import keys, project_configs, tenants
from projections.reports import billing

# 404: the admin's ``tenant_id`` names no tenant (a query parameter, which the OpenAPI
# document's derivation of statuses doesn't read).
router = APIRouter(
    prefix="/manage", tags=["Management API (seed 002)"], responses=also_answers(404)
)

TenantQuery = Query(
    None, description="The project (tenant) to act on: required with the admin token only."
)
Number = StrictInt | StrictFloat | None


class ManageKey(KeyPublic):
    is_management_key: bool


class ManageKeyCreate(Strict):
    name: str = Field(min_length=1, max_length=63, description="A unique name for the new key.")
    is_management_key: StrictBool = Field(
        False, description="Whether the new key has management permissions."
    )


class ManageKeyCreated(ManageKey):
    api_key: str = Field(description="The key itself. Shown once; store it now.")


class ManageKeyDelete(Strict):
    name: str = Field(min_length=1, max_length=63, description="The name of the key to delete.")


class ManageKeyDeleted(BaseModel):
    success: bool = True
    deleted: str = Field(description="The name of the deleted key.")


class InferenceSettings(BaseModel):
    model: str | None = None
    temperature: float | int | None = None
    top_p: float | int | None = None
    max_tokens: int | None = None
    frequency_penalty: float | int | None = None
    presence_penalty: float | int | None = None


class ProjectConfigPublic(InferenceSettings):
    id: UUID = Field(alias="_id", description="The project configuration's id.")
    project_id: UUID
    allow_overwrite: bool = Field(
        description="Whether each request may set its own inference settings; if not, the"
        " project's settings replace the request's."
    )
    created_at: datetime
    updated_at: datetime


class ProjectConfigUpdate(Strict):
    """The settings to change; a setting given as null is removed, one not given is kept."""

    allow_overwrite: StrictBool | None = None
    created_at: datetime | None = Field(None, description="Accepted and ignored.")
    updated_at: datetime | None = Field(None, description="Accepted and ignored.")
    model: str | None = None
    temperature: Number = None
    top_p: Number = None
    max_tokens: StrictInt | None = None
    frequency_penalty: Number = None
    presence_penalty: Number = None


class Success(BaseModel):
    success: bool = True


class Balance(BaseModel):
    current_balance: float = Field(
        description="Credits minus spend in EUR, written exactly (a JSON number of the decimal)."
    )
    currency: str = "EUR"


def managed(key: dict[str, Any]) -> dict[str, Any]:
    return {**key, "is_management_key": key["kind"] == "management"}


@router.get("/api-keys", response_model=list[ManageKey])
def list_api_keys(
    caller: Caller, gate: Gate, tenant_id: UUID | None = TenantQuery
) -> list[dict[str, Any]]:
    """The project's API keys (never their secrets), newest first: the newest 500."""
    project = caller.owning_tenant(tenant_id)
    with gate.reading("keys") as curs:
        rows = listing(lambda: keys.list_keys(curs, project, 500, None))["data"]
    return [managed(row) for row in rows]


@router.post("/api-keys", status_code=201, response_model=ManageKeyCreated)
async def create_api_key(
    body: ManageKeyCreate,
    caller: Caller,
    commands: KeysDep,
    once: Once,
    request: Request,
    response: Response,
    tenant_id: UUID | None = TenantQuery,
) -> dict[str, Any]:
    """Create a key: a management key, or (by default) an inference key."""
    kind = "management" if body.is_management_key else "router"

    def shown(key: ApiKey, secret: str) -> ManageKeyCreated:
        return ManageKeyCreated(**managed(key_shown(key)), api_key=secret)

    def create() -> ManageKeyCreated:
        project = caller.owning_tenant(tenant_id)
        return shown(*commands.issue_key(caller, project, body.name, kind))

    def recover(done: Created) -> ManageKeyCreated:
        return shown(commands.get_key_for(caller, once.created_id(done, ApiKey)), shown_once(done))

    return await run_in_threadpool(once, caller, request, response, body, create, recover)


@router.delete("/api-keys", response_model=ManageKeyDeleted)
def delete_api_key(
    body: ManageKeyDelete, caller: Caller, commands: KeysDep, tenant_id: UUID | None = TenantQuery
) -> ManageKeyDeleted:
    """Delete a key by name, with its budgets. The key making the request can't (409)."""
    key_id = commands.key_named(caller, caller.owning_tenant(tenant_id), body.name)
    commands.delete_key(caller, key_id)
    return ManageKeyDeleted(deleted=body.name)


def read_config(gate: ReadGate, caller: Principal, project: UUID) -> dict[str, Any]:
    with gate.reading("project_configs", "tenants") as curs:
        row = project_configs.get_config(curs, project)
        tenant = tenants.get_tenant(curs, project, caller.tenant_filter())
    if tenant is None:
        raise NotFoundError("tenant", project)
    if row is None:  # never configured: the defaults, as of the project's creation
        row = {
            "id": ProjectConfig.create_id(project),
            "allow_overwrite": DEFAULT_ALLOW_OVERWRITE,
            "settings": {},
            "created_at": tenant["created_at"],
            "updated_at": tenant["created_at"],
        }
    return {
        "_id": row["id"],
        "project_id": project,
        "allow_overwrite": row["allow_overwrite"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        **{name: row["settings"].get(name) for name in SETTINGS},
    }


@router.get("/project-configs", response_model=ProjectConfigPublic, response_model_by_alias=True)
def get_project_config(
    caller: Caller, gate: Gate, tenant_id: UUID | None = TenantQuery
) -> dict[str, Any]:
    """The project's configuration: ``allow_overwrite`` and its inference settings (null where
    the project sets none)."""
    return read_config(gate, caller, caller.owning_tenant(tenant_id))


@router.put("/project-configs", response_model=Success)
def update_project_config(
    body: ProjectConfigUpdate,
    caller: Caller,
    commands: ProjectConfigsDep,
    tenant_id: UUID | None = TenantQuery,
) -> Success:
    """Change the project's configuration (management keys). With ``allow_overwrite`` false
    the gateway replaces a chat request's settings with the project's; with true the request's
    win and the project's fill the gaps."""
    changes = {name: getattr(body, name) for name in SETTINGS if name in body.model_fields_set}
    commands.configure(caller, caller.owning_tenant(tenant_id), body.allow_overwrite, changes)
    return Success()


@router.get("/users/balance", response_model=Balance)
def get_balance(caller: Caller, gate: Gate, tenant_id: UUID | None = TenantQuery) -> Response:
    """The project's balance: credits minus spend, in EUR (as ``/api/v1/tenants/{id}/balance``)."""
    project = caller.owning_tenant(tenant_id)
    check_tenant(gate, caller, project)
    with gate.reading("usage", "costs") as curs:
        amount = billing.balance(curs, project, datetime.now(UTC))
    # The decimal's own digits as a JSON number: no float ever holds the amount.
    body = f'{{"current_balance":{billing.money(amount)},"currency":"EUR"}}'
    return Response(body.encode(), media_type="application/json")
