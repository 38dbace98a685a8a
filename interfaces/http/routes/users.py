"""User routes of the management API: a tenant's users (the admin's, or the tenant's own)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response

from application.idempotency import Created
from domain.user import User
from interfaces.db.readgate import ReadGate
from interfaces.http.deps import Caller, Gate, Once, UsersDep
from interfaces.http.routes.common import CursorQuery, LimitQuery, found, scoped_listing
from interfaces.http.schemas import Deleted, Page, UserCreate, UserPublic
from projections.readmodels import users

router = APIRouter(tags=["users"])


def shown(commands: UsersDep, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with their emails decrypted (the read model keeps only the ciphertext)."""
    emails = commands.emails((r["tenant_id"], r["email_ciphertext"]) for r in rows)
    return [
        {k: v for k, v in r.items() if k != "email_ciphertext"} | {"email": email}
        for r, email in zip(rows, emails, strict=True)
    ]


def read_user(gate: ReadGate, commands: UsersDep, caller: Caller, user_id: UUID) -> UserPublic:
    with gate.reading("users") as curs:
        row = users.get_user(curs, user_id, caller.tenant_filter())
    return UserPublic(**shown(commands, [found(row, "user", user_id)])[0])


@router.post("/tenants/{tenant_id}/users", status_code=201, response_model=UserPublic)
def add_user(
    tenant_id: UUID,
    body: UserCreate,
    caller: Caller,
    commands: UsersDep,
    gate: Gate,
    once: Once,
    request: Request,
    response: Response,
) -> dict:
    """Add a user to a tenant (the admin, or the tenant's management key or user). The user
    signs in with ``POST /auth/login``."""

    def create() -> UserPublic:
        user_id = commands.add_user(caller, tenant_id, body.email, body.password)
        return read_user(gate, commands, caller, user_id)

    def recover(done: Created) -> UserPublic:
        return read_user(gate, commands, caller, once.created_id(done, User))

    return once(caller, request, response, body, create, recover)


@router.get("/users", response_model=Page[UserPublic])
def list_users(
    caller: Caller,
    commands: UsersDep,
    gate: Gate,
    tenant_id: UUID | None = Query(None, description="Only this tenant's users."),
    limit: int = LimitQuery,
    cursor: str | None = CursorQuery,
) -> dict:
    """List users, newest first (a tenant's caller sees only its tenant's)."""
    with gate.reading("users") as curs:
        answer = scoped_listing(
            caller, tenant_id, lambda t: users.list_users(curs, t, limit, cursor)
        )
    answer["data"] = shown(commands, answer["data"])
    return answer


@router.get("/users/{user_id}", response_model=UserPublic)
def get_user(user_id: UUID, caller: Caller, commands: UsersDep, gate: Gate) -> UserPublic:
    """Get one user."""
    return read_user(gate, commands, caller, user_id)


@router.delete("/users/{user_id}", response_model=Deleted)
def remove_user(user_id: UUID, caller: Caller, commands: UsersDep) -> Deleted:
    """Remove a user for good: its tokens are refused from its next request on."""
    commands.remove_user(caller, user_id)
    return Deleted(id=user_id)
