"""Health: liveness (cheap), readiness (the database and the read models), and the fuller
status an operator reads with `hostplane status` (admin)."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Literal

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from interfaces.http.deps import AdminCaller, BackgroundDep, RunnerDep, SettingsDep

router = APIRouter(tags=["health"])

READY_RETRY_AFTER = "5"  # seconds: read models catch up at thousands of events a second


class ReadModelLag(BaseModel):
    position: int
    lag: int


class Readiness(BaseModel):
    status: Literal["ready"]
    database: Literal["ok"]
    read_models: dict[str, ReadModelLag]


@router.get("/health")
def health() -> dict[str, str]:
    """Liveness: answers ``{"status": "ok"}`` while the process serves requests."""
    return {"status": "ok"}


@router.get(
    "/health/ready",
    responses={503: {"description": "The database is unreachable or a read model lags"}},
)
def ready(runner: RunnerDep, settings: SettingsDep) -> Readiness:
    """Readiness, for load balancers: 200 while the database answers and no read model is more
    than ``HOSTPLANE_READY_MAX_LAG`` events behind the log; else 503 with ``Retry-After``
    (``database_unavailable`` or ``not_ready``). No token needed."""
    rows = runner.status()
    behind = [r for r in rows if r["lag"] > settings.ready_max_lag]
    if behind:
        lags = ", ".join(f"{r['name']} ({r['lag']} events)" for r in behind)
        raise HTTPException(
            503, f"read models behind the log: {lags}", {"Retry-After": READY_RETRY_AFTER}
        )
    return Readiness(
        status="ready",
        database="ok",
        read_models={r["name"]: ReadModelLag(position=r["position"], lag=r["lag"]) for r in rows},
    )


class ReadModelStatus(BaseModel):
    name: str
    position: int = Field(description="The last log position it has applied.")
    head: int = Field(description="The log's head when it was read.")
    lag: int = Field(description="Log positions behind the head.")
    stalled_at: int | None = Field(description="The event it cannot apply, if it is stalled.")


class EventLog(BaseModel):
    count: int = Field(description="Events in the store.")
    head: int = Field(description="The last notification id (ids have gaps: rolled-back writes).")


class JobStatus(BaseModel):
    id: str
    next_run_at: datetime | None = Field(description="Null: paused.")
    every_seconds: float | None = Field(description="Its interval; null if not an interval job.")
    cluster_wide: bool = Field(description="Runs on the leader node only (else in each process).")


class ServerStatus(BaseModel):
    pid: int = Field(description="The serving process that answered.")
    leader: bool = Field(
        description="Whether it runs the projection worker and the cluster-wide jobs now."
    )
    events: EventLog
    read_models: list[ReadModelStatus]
    jobs: list[JobStatus] = Field(description="The answering process's scheduled jobs.")


@router.get("/status")
def server_status(
    caller: AdminCaller, runner: RunnerDep, background: BackgroundDep
) -> ServerStatus:
    """What ``hostplane status`` prints (admin): the event log's size, each read model's
    position and lag, and the answering process's scheduled jobs with their next run. Counts
    the events: O(events), for an operator now and then, not for a probe."""
    count, head = runner.log_size()
    return ServerStatus(
        pid=os.getpid(),
        leader=background.leading,
        events=EventLog(count=count, head=head),
        read_models=[
            ReadModelStatus(
                name=r["name"],
                position=r["position"],
                head=r["head"],
                lag=r["lag"],
                stalled_at=r["stalled"]["position"] if r["stalled"] else None,
            )
            for r in runner.status()
        ],
        jobs=[
            JobStatus.model_validate(job, from_attributes=True) for job in background.scheduled()
        ],
    )
