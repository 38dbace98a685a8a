"""Export: the tenant's NDJSON export (``GET /tenants/{id}/export``'s lines, streamed), now or
as of a past moment. The download is a GET (it changes nothing) but needs the session, like
every page."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from application.auth import Principal
from application.errors import ApplicationError
from domain.base import DomainError
from interfaces.console.web import (
    SignedOut,
    _container,
    check_tenant,
    failed,
    principal_of,
    render,
    router,
    tenant_page,
    to_login,
)
from interfaces.http.routes.export import NDJSON
from interfaces.http.shown import ExportNotReadyError, ndjson_chunks
from interfaces.http.times import parse_time


@router.get("/t/{tenant_id}/export")
async def export_page(request: Request, tenant_id: UUID) -> Response:
    """The download form: now, or as of a past moment."""

    def read(caller: Principal, tenant: dict[str, Any]) -> dict[str, Any]:
        return {}

    return await tenant_page(request, tenant_id, "export.html", "export", read)


@router.get("/t/{tenant_id}/export.ndjson")
async def export_download(request: Request, tenant_id: UUID, as_of: str = "") -> Response:
    """The export as a download; its lines are read from one snapshot while they are sent."""
    try:
        caller = await principal_of(request)
    except SignedOut:
        return to_login()
    replays = _container(request).replays

    def open_lines() -> Any:
        check_tenant(request, caller, tenant_id)
        return replays.open_export(caller, tenant_id, parse_time(as_of or None, "as_of"))

    try:
        lines = await run_in_threadpool(open_lines)
    except (ApplicationError, DomainError) as e:
        return failed(request, e, caller)
    except ExportNotReadyError as e:
        response = render(request, "error.html", {"status": 503, "message": str(e)}, caller, 503)
        response.headers["Retry-After"] = "1"
        return response
    filename = f"hostplane-export-{tenant_id}.ndjson"
    return StreamingResponse(
        ndjson_chunks(lines),
        media_type=NDJSON,
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )
