"""API key routes. Secrets are returned once, at creation; never in lists."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from application.idempotency import Created
from domain.apikey import ApiKey
from interfaces.db.readgate import ReadGate
from interfaces.http.creating import shown_once
from interfaces.http.deps import AsyncPoolDep, Caller, Gate, KeysDep, Once, ReplaysDep
from interfaces.http.routes.common import CursorQuery, LimitQuery, found, scoped_listing
from interfaces.http.schemas import (
    Deleted,
    KeyCreate,
    KeyCreated,
    KeyDisabledUpdate,
    KeyPublic,
    KeyUpdate,
    Page,
)
from interfaces.http.shown import key_shown
from interfaces.http.times import AsOfQuery, parse_time
from projections.readmodels import keys

router = APIRouter(tags=["keys"])


def read_key(gate: ReadGate, caller: Caller, key_id: UUID) -> KeyPublic:
    with gate.reading("keys") as curs:
        row = keys.get_key(curs, key_id, caller.tenant_filter())
    return KeyPublic(**found(row, "key", key_id))


@router.post("/tenants/{tenant_id}/keys", status_code=201, response_model=KeyCreated)
async def create_key(
    tenant_id: UUID,
    body: KeyCreate,
    caller: Caller,
    commands: KeysDep,
    once: Once,
    request: Request,
    response: Response,
) -> dict:
    """Issue a key for a tenant. The response holds the secret: it is shown this once."""

    def create() -> KeyCreated:
        # The key is shown as saved, not read back: the write doesn't wait for the read models.
        # The caller's next read does (read-your-writes), in whichever process it lands.
        key, secret = commands.issue_key(caller, tenant_id, **body.model_dump())
        return KeyCreated(key=KeyPublic(**key_shown(key)), secret=secret)

    def recover(done: Created) -> KeyCreated:
        key = commands.get_key_for(caller, once.created_id(done, ApiKey))
        return KeyCreated(key=KeyPublic(**key_shown(key)), secret=shown_once(done))

    # One thread hop for the command (and any Idempotency-Key bookkeeping). An async route:
    # FastAPI would validate a plain route's response in a second hop.
    return await run_in_threadpool(once, caller, request, response, body, create, recover)


@router.get("/keys", response_model=Page[KeyPublic])
def list_keys(
    caller: Caller,
    gate: Gate,
    tenant_id: UUID | None = Query(None, description="Only this tenant's keys."),
    limit: int = LimitQuery,
    cursor: str | None = CursorQuery,
) -> dict:
    """List keys (no secrets), newest first."""
    with gate.reading("keys") as curs:
        return scoped_listing(caller, tenant_id, lambda t: keys.list_keys(curs, t, limit, cursor))


@router.get("/keys/{key_id}", response_model=KeyPublic)
async def get_key(
    key_id: UUID,
    caller: Caller,
    gate: Gate,
    pool: AsyncPoolDep,
    replays: ReplaysDep,
    as_of: str | None = AsOfQuery,
) -> KeyPublic:
    """Get one key (no secret); with ``as_of``, the key as it was then, replayed from events."""
    at = parse_time(as_of, "as_of")
    if at is not None:
        return KeyPublic(**await run_in_threadpool(replays.key_as_of, caller, key_id, at))
    # The hottest read of the API (a gateway checks keys): served on the event loop.
    async with gate.reading_async(pool, "keys") as curs:
        row = await keys.get_key_async(curs, key_id, caller.tenant_filter())
    return KeyPublic(**found(row, "key", key_id))


@router.delete("/keys/{key_id}", response_model=Deleted)
def delete_key(key_id: UUID, caller: Caller, commands: KeysDep) -> Deleted:
    """Delete (revoke) a key for good, with its budgets. A key can't delete itself."""
    commands.delete_key(caller, key_id)
    return Deleted(id=key_id)


@router.put("/keys/{key_id}/disabled", response_model=KeyPublic)
def set_disabled(
    key_id: UUID, body: KeyDisabledUpdate, caller: Caller, commands: KeysDep, gate: Gate
) -> KeyPublic:
    """Disable or re-enable a key."""
    commands.set_key_disabled(caller, key_id, body.disabled)
    return read_key(gate, caller, key_id)


@router.patch("/keys/{key_id}", response_model=KeyPublic)
def change_key(
    key_id: UUID, body: KeyUpdate, caller: Caller, commands: KeysDep, gate: Gate
) -> KeyPublic:
    """Change a key's name or restrictions (allowed models, sovereignty mode, expiry, IP
    allowlist, requests per minute); fields left out keep their value. Audited; every process
    applies the change from the key's next request."""
    commands.change_key(caller, key_id, body.changes())
    return read_key(gate, caller, key_id)
