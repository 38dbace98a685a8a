"""The gateway's live load (seed 004): in flight and queued per process, and the fair share."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, Field

from interfaces.gateway import loadview
from interfaces.http.deps import AdminCaller, AsyncPoolDep

router = APIRouter(tags=["capacity"])

IN_FLIGHT = "Upstream requests running now."
QUEUED = "Requests waiting for a place."
ADMITTED = "Requests given a place in the last minute."


class ProcessLoad(BaseModel):
    process: str = Field(description="The serving process's id (new at each start).")
    hostname: str
    pid: int
    in_flight: int = Field(description=IN_FLIGHT)
    queued: int = Field(description=QUEUED)
    max_in_flight: int = Field(description="Its cap in force.")
    updated_at: datetime = Field(description="When it last reported (about every 0.5 s).")


class Stats(BaseModel):
    in_flight: int = Field(description=IN_FLIGHT + " Summed over the serving processes.")
    queued: int = Field(description=QUEUED + " Summed over the serving processes.")
    max_in_flight: int = Field(description="The caps of the serving processes, summed.")
    processes: list[ProcessLoad]


class TenantShare(BaseModel):
    tenant_id: str
    weight: int
    in_flight: int = Field(description=IN_FLIGHT)
    queued: int = Field(description=QUEUED)
    admitted_last_minute: int = Field(description=ADMITTED)
    share: float = Field(description="Its entitled part of capacity while active; 0 when idle.")


class GroupShare(BaseModel):
    group: str | None = Field(description="The group's name; null: a tenant without a group.")
    weight: int
    in_flight: int = Field(description=IN_FLIGHT)
    queued: int = Field(description=QUEUED)
    admitted_last_minute: int = Field(description=ADMITTED)
    share: float = Field(description="Its weight over the active groups' weights; 0 if idle.")
    tenants: list[TenantShare]


class FairShareLive(BaseModel):
    in_flight: int
    queued: int
    processes: int = Field(description="Serving processes that reported in the last seconds.")
    groups: list[GroupShare] = Field(description="Groups with a tenant active in the last minute.")


@router.get("/stats", response_model=Stats)
async def get_stats(caller: AdminCaller, pool: AsyncPoolDep) -> dict:
    """In flight, queued and ``max_in_flight``, summed and per serving process (admin)."""
    return loadview.stats(await loadview.live_processes(pool))


@router.get("/fairshare/live", response_model=FairShareLive)
async def get_fair_share(caller: AdminCaller, pool: AsyncPoolDep) -> dict:
    """The schedulers' snapshot: per group and tenant, weight, load and share (admin)."""
    return loadview.fair_share(await loadview.live_processes(pool))
