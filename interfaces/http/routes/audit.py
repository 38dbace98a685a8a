"""Audit log route: every change of every resource, newest first (seed 004)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Query
from pydantic import BaseModel

from domain.base import InvalidValueError, utc
from interfaces.http.deps import Caller, ContainerDep
from interfaces.http.openapi import DATE_OR_TIME
from interfaces.http.routes.common import CursorQuery, LimitQuery, listing
from interfaces.http.schemas import Page
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


def instant(value: str | None, field: str) -> datetime | None:
    """An ISO 8601 time (a bare date is its midnight; no offset means UTC)."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidValueError(
            field, f"{field} must be an ISO 8601 time, e.g. 2025-10-30T00:00:00Z; got {value!r}"
        ) from None
    return utc(parsed, field)


@router.get("/audit", response_model=Page[AuditEntryPublic])
def list_audit(
    caller: Caller,
    container: ContainerDep,
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
    start, end = instant(since, "since"), instant(until, "until")
    if start is not None and end is not None and end < start:
        raise InvalidValueError("until", "until must not be before since")
    filters = {
        "tenant_id": tenant_id,
        "actor": actor,
        "action": action,
        "target_type": target_type,
        "target_id": target_id,
        "since": start,
        "until": end,
    }
    with container.reading("audit") as curs:
        return listing(
            lambda: audit.list_entries(curs, caller.tenant_filter(), filters, limit, cursor)
        )
