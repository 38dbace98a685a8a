"""Capacity routes (seed 004): the live ``max_in_flight`` of every serving process."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, Field, StrictInt

from interfaces.db.readgate import ReadGate
from interfaces.http.deps import AdminCaller, CapacityDep, Gate
from interfaces.http.schemas import Strict
from projections.readmodels import capacity

router = APIRouter(tags=["capacity"])


class CapacityUpdate(Strict):
    max_in_flight: StrictInt = Field(
        description="Upstream requests each serving process admits at once (1-1,000,000)."
    )


class CapacityPublic(BaseModel):
    max_in_flight: int = Field(
        description="Upstream requests each serving process admits at once; beyond it they queue."
    )
    is_default: bool = Field(
        description="True until an operator sets it: then it is HOSTPLANE_MAX_IN_FLIGHT."
    )
    updated_at: datetime | None = Field(description="When it was last set; null if never.")


def read_capacity(gate: ReadGate, commands: CapacityDep) -> CapacityPublic:
    with gate.reading("capacity") as curs:
        row = capacity.get_capacity(curs)
    if row is None:
        return CapacityPublic(
            max_in_flight=commands.default_max_in_flight, is_default=True, updated_at=None
        )
    return CapacityPublic(
        max_in_flight=row["max_in_flight"], is_default=False, updated_at=row["updated_at"]
    )


@router.get("/capacity", response_model=CapacityPublic)
def get_capacity(caller: AdminCaller, commands: CapacityDep, gate: Gate) -> CapacityPublic:
    """The ``max_in_flight`` in force in every serving process (admin)."""
    return read_capacity(gate, commands)


@router.put("/capacity", response_model=CapacityPublic)
def set_capacity(
    body: CapacityUpdate, caller: AdminCaller, commands: CapacityDep, gate: Gate
) -> CapacityPublic:
    """Change ``max_in_flight`` live, in every process, without a restart (admin; audited)."""
    commands.set_max_in_flight(caller, body.max_in_flight)
    return read_capacity(gate, commands)
