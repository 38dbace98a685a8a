"""Export route: everything a tenant owns, as replayed from its events (NDJSON, streamed)."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, HTTPException
from fastapi.responses import StreamingResponse

from interfaces.http.deps import Caller, ReplaysDep
from interfaces.http.shown import ExportNotReadyError, ndjson_chunks
from interfaces.http.times import AsOfQuery, parse_time

router = APIRouter(tags=["export"])

NDJSON = "application/x-ndjson"


@router.get(
    "/tenants/{tenant_id}/export",
    response_class=StreamingResponse,
    responses={200: {"content": {NDJSON: {}}, "description": "The export, one JSON per line."}},
)
def export_tenant(
    tenant_id: UUID, caller: Caller, replays: ReplaysDep, as_of: str | None = AsOfQuery
) -> StreamingResponse:
    """Export a tenant: a header, every event, the replayed state, the bill per month, an end.

    Secrets are redacted as in the audit log. The admin, or the tenant's own management key.
    """
    try:
        lines = replays.open_export(caller, tenant_id, parse_time(as_of, "as_of"))
    except ExportNotReadyError as e:
        raise HTTPException(status_code=503, detail=str(e), headers={"Retry-After": "1"}) from None
    filename = f"hostplane-export-{tenant_id}.ndjson"
    return StreamingResponse(
        ndjson_chunks(lines),
        media_type=NDJSON,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
