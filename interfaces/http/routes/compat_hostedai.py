"""HostedAI's API as seed 001 documents it (base URL ``/api``): translated onto /api/v1.

Each route calls the /api/v1 route that serves the same thing, so the answers are the same.
A key used from outside its IP allowlist is a 401 here, as HostedAI's troubleshooting says.
"""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter

from interfaces.http.deps import Gate, IpRestrictedAs401Caller, SettingsDep, UsersDep
from interfaces.http.routes import billing, users
from interfaces.http.routes.billing import Day
from interfaces.http.routes.common import CursorQuery, LimitQuery
from interfaces.http.schemas import Page, UserPublic

router = APIRouter(prefix="/api", tags=["HostedAI (seed 001)"])


@router.get("/team-billing/summary/{team_id}/{start}/{end}")
def team_billing_summary(
    team_id: UUID,
    start: Day,
    end: Day,
    caller: IpRestrictedAs401Caller,
    gate: Gate,
    settings: SettingsDep,
) -> dict:
    """Billing of a team (a tenant) for ``[start 00:00Z, end 00:00Z)``: the same date twice
    is 0 seconds; ``2025-10-30/2025-10-31`` is all of 30 October. As
    ``GET /api/v1/team-billing/summary/{tenant_id}/{start}/{end}``."""
    return billing.billing_summary(team_id, start, end, caller, gate, settings)


@router.get("/users", response_model=Page[UserPublic])
def list_users(
    caller: IpRestrictedAs401Caller,
    commands: UsersDep,
    gate: Gate,
    limit: int = LimitQuery,
    cursor: str | None = CursorQuery,
) -> dict:
    """The users of the key's team (tenant), or of every team for the admin token, newest
    first. As ``GET /api/v1/users``."""
    return users.list_users(caller, commands, gate, None, limit, cursor)
