"""Export route: everything a tenant owns, as replayed from its events (NDJSON, streamed)."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import StreamingResponse

from interfaces.http.deps import Caller, ContainerDep
from interfaces.http.openapi import DATE_OR_TIME
from interfaces.http.routes.audit import instant
from interfaces.http.shown import ExportNotReadyError, ndjson_chunks, open_export

router = APIRouter(tags=["export"])

AsOfQuery = Query(
    None,
    description="Replay only the events up to this ISO 8601 time: the state as it was then.",
    json_schema_extra=DATE_OR_TIME,
)
NDJSON = "application/x-ndjson"


@router.get(
    "/tenants/{tenant_id}/export",
    response_class=StreamingResponse,
    responses={200: {"content": {NDJSON: {}}, "description": "The export, one JSON per line."}},
)
def export_tenant(
    tenant_id: UUID, caller: Caller, container: ContainerDep, as_of: str | None = AsOfQuery
) -> StreamingResponse:
    """Export a tenant: a header, every event, the replayed state, the bill per month, an end.

    Secrets are redacted as in the audit log. The admin, or the tenant's own management key.
    """
    try:
        lines = open_export(container, caller, tenant_id, instant(as_of, "as_of"))
    except ExportNotReadyError as e:
        raise HTTPException(status_code=503, detail=str(e), headers={"Retry-After": "1"}) from None
    filename = f"hostplane-export-{tenant_id}.ndjson"
    return StreamingResponse(
        ndjson_chunks(lines),
        media_type=NDJSON,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
