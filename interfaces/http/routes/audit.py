"""Audit log route: every change of every resource, newest first (seed 004)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Query
from pydantic import BaseModel

from interfaces.http.deps import Caller, Gate
from interfaces.http.openapi import DATE_OR_TIME
from interfaces.http.routes.common import CursorQuery, LimitQuery, listing
from interfaces.http.schemas import Page
from interfaces.http.times import time_range
from projections.readmodels import audit

router = APIRouter(tags=["audit"])


class AuditEntryPublic(BaseModel):
    id: int
    at: datetime
    actor: str
    client_ip: str | None
    tenant_id: UUID | None
    action: str
    target_type: str
    target_id: UUID
    changes: dict[str, Any]


@router.get("/audit", response_model=Page[AuditEntryPublic])
def list_audit(
    caller: Caller,
    gate: Gate,
    tenant_id: UUID | None = Query(None, description="Only entries of this tenant."),
    actor: str | None = Query(None, description="Only entries by this actor: admin, key:<id>."),
    action: str | None = Query(None, description="Only this action, e.g. key.issued."),
    target_type: str | None = Query(None, description="Only this kind of target, e.g. key."),
    target_id: UUID | None = Query(None, description="Only entries about this resource."),
    since: str | None = Query(
        None, description="Entries at or after this time.", json_schema_extra=DATE_OR_TIME
    ),
    until: str | None = Query(
        None, description="Entries before this time.", json_schema_extra=DATE_OR_TIME
    ),
    limit: int = LimitQuery,
    cursor: str | None = CursorQuery,
) -> dict:
    """The audit log: who changed what, when and from where; secrets redacted."""
    start, end = time_range(since, until, "since", "until")
    filters = {
        "tenant_id": tenant_id,
        "actor": actor,
        "action": action,
        "target_type": target_type,
        "target_id": target_id,
        "since": start,
        "until": end,
    }
    with gate.reading("audit") as curs:
        return listing(
            lambda: audit.list_entries(curs, caller.tenant_filter(), filters, limit, cursor)
        )
