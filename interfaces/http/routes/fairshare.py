"""Fair-share group routes (seed 004): groups of tenants sharing capacity by weight."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field, StrictInt

from interfaces.db.readgate import ReadGate
from interfaces.http.deps import AdminCaller, FairshareDep, Gate, Once
from interfaces.http.openapi import also_answers
from interfaces.http.routes.common import CursorQuery, LimitQuery, found, listing
from interfaces.http.schemas import Page, Strict, WeightUpdate
from projections.readmodels import fairshare

router = APIRouter(tags=["fair share"])

WEIGHT = "Its share of capacity relative to other groups' (1-10,000)."


class GroupCreate(Strict):
    name: str = Field(description="Unique; what a tenant's ``group`` names (case counts).")
    weight: StrictInt = Field(100, description=WEIGHT)


class GroupPublic(BaseModel):
    id: UUID
    name: str
    weight: int = Field(description=WEIGHT)
    created_at: datetime
    updated_at: datetime


def read_group(gate: ReadGate, name: str) -> GroupPublic:
    with gate.reading("fairshare") as curs:
        row = fairshare.get_group(curs, name)
    return GroupPublic(**found(row, "fairshare group", name))


@router.post("/fairshare/groups", status_code=201, response_model=GroupPublic)
def create_group(
    body: GroupCreate,
    caller: AdminCaller,
    commands: FairshareDep,
    gate: Gate,
    once: Once,
    request: Request,
    response: Response,
) -> dict:
    """Create a fair-share group (admin). Names are unique."""

    def create() -> GroupPublic:
        commands.create_group(caller, body.name, body.weight)
        return read_group(gate, body.name)

    # The group is found by its name, which the request gives.
    return once(caller, request, response, body, create, lambda done: read_group(gate, body.name))


@router.get("/fairshare/groups", response_model=Page[GroupPublic])
def list_groups(
    caller: AdminCaller, gate: Gate, limit: int = LimitQuery, cursor: str | None = CursorQuery
) -> dict:
    """List fair-share groups, newest first (admin)."""
    with gate.reading("fairshare") as curs:
        return listing(lambda: fairshare.list_groups(curs, limit, cursor))


@router.get("/fairshare/groups/{name}", response_model=GroupPublic, responses=also_answers(404))
def get_group(name: str, caller: AdminCaller, gate: Gate) -> GroupPublic:
    """Get one fair-share group by name (admin)."""
    return read_group(gate, name)


@router.patch(
    "/fairshare/groups/{name}/weight", response_model=GroupPublic, responses=also_answers(404)
)
def change_weight(
    name: str, body: WeightUpdate, caller: AdminCaller, commands: FairshareDep, gate: Gate
) -> GroupPublic:
    """Change a group's weight (admin; audited). Admission uses it within a second."""
    commands.change_group_weight(caller, name, body.weight)
    return read_group(gate, name)
