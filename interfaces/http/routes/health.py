"""Health: liveness (cheap) and readiness (the database and the read models)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel

from interfaces.http.deps import RunnerDep, SettingsDep

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
