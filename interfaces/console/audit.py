"""The audit log: who changed what, when and from where, filtered and paged by cursor like
``GET /audit`` (the same query), each entry's changed fields listed (secrets already redacted
by the audit read model)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

import orjson
from fastapi import Request
from starlette.responses import Response

from application.auth import Principal
from domain.base import InvalidValueError
from interfaces.console.web import _container, router, tenant_page
from interfaces.http.routes.common import listing
from interfaces.http.times import time_range
from projections.readmodels import audit, audit_fields

LOCAL = "%Y-%m-%dT%H:%M:%S"  # what an <input type="datetime-local" step="1"> reads and sends


def known_actions() -> list[str]:
    """Every action the log can hold, for the filter's suggestions."""
    fields = audit_fields
    return sorted(
        {
            fields.action_of(a, e)
            for a in fields.AUDITED
            for e in fields.event_classes(a)
            if e is not a.Event
        }
    )


ACTIONS = known_actions()
TARGET_TYPES = sorted({audit_fields.target_type(a) for a in audit_fields.AUDITED})


def target_of(value: str) -> UUID | None:
    if not value:
        return None
    try:
        return UUID(value)
    except ValueError:
        raise InvalidValueError("target_id", "target_id must be a resource's id (a UUID)") from None


def page_size(value: str) -> int:
    """1 to 500 entries a page, as ``GET /audit``'s ``limit``."""
    if not value.isdigit() or not 1 <= int(value) <= 500:
        raise InvalidValueError("limit", "limit must be a whole number from 1 to 500")
    return int(value)


def shown(value: Any) -> str:
    """A changed field's value as text: strings as they are, anything else as JSON."""
    if isinstance(value, str):
        return value
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def local(t: datetime | None) -> str:
    return t.astimezone(UTC).strftime(LOCAL) if t is not None else ""


@router.get("/t/{tenant_id}/audit")
async def audit_page(
    request: Request,
    tenant_id: UUID,
    actor: str = "",
    action: str = "",
    target_type: str = "",
    target_id: str = "",
    since: str = "",
    until: str = "",
    cursor: str = "",
    limit: str = "50",
) -> Response:
    """One page of the tenant's audit log, newest first; the filters as ``GET /audit`` reads
    them (times without an offset are UTC)."""
    container = _container(request)

    def read(caller: Principal, tenant: dict[str, Any]) -> dict[str, Any]:
        start, end = time_range(since or None, until or None, "since", "until")
        size = page_size(limit)
        filters = {
            "tenant_id": tenant_id,
            "actor": actor or None,
            "action": action or None,
            "target_type": target_type or None,
            "target_id": target_of(target_id),
            "since": start,
            "until": end,
        }
        with container.gate.reading("audit") as curs:
            page = listing(
                lambda: audit.list_entries(
                    curs, caller.tenant_filter(), filters, size, cursor or None
                )
            )
        asked = {
            "actor": actor,
            "action": action,
            "target_type": target_type,
            "target_id": target_id,
            "since": local(start),
            "until": local(end),
        }
        # The pages' links carry the filters as given (the pickers show them to the second).
        given = {**asked, "since": since, "until": until, "limit": "" if size == 50 else limit}
        kept = {k: v for k, v in given.items() if v}
        entries = [
            {
                **e,
                "when": e["at"].astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
                "changed": [(k, shown(v)) for k, v in e["changes"].items()],
            }
            for e in page["data"]
        ]
        base = f"/console/t/{tenant_id}/audit"
        return {
            "entries": entries,
            "asked": asked,
            "limit": kept.get("limit"),
            "actions": ACTIONS,
            "target_types": TARGET_TYPES,
            "next_url": page["next_cursor"]
            and f"{base}?{urlencode({**kept, 'cursor': page['next_cursor']})}",
            "first_url": cursor and (f"{base}?{urlencode(kept)}" if kept else base),
        }

    return await tenant_page(request, tenant_id, "audit.html", "audit", read)
