"""Queries of the audit read model: pages of entries, newest first, behind an opaque cursor."""

from __future__ import annotations

import base64
from typing import Any
from uuid import UUID

from psycopg import Cursor

from projections.engine.base import fetch_page, live_schema

SCHEMA = live_schema("audit")
COLUMNS = "position, at, actor, client_ip, tenant_id, action, target_type, target_id, changes"
FILTERS = ("tenant_id", "actor", "action", "target_type", "target_id")


def encode_position(position: int) -> str:
    return base64.urlsafe_b64encode(str(position).encode()).decode().rstrip("=")


def decode_position(cursor: str) -> int:
    """Decode an opaque page cursor; ``ValueError`` if it isn't one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not raw.isdigit():
            raise ValueError(raw)
        return int(raw)
    except Exception as e:  # any malformed input is the caller's mistake
        raise ValueError("invalid cursor") from e


def _shape(row: dict[str, Any]) -> dict[str, Any]:
    entry = dict(row)
    entry["id"] = entry.pop("position")
    return entry


def list_entries(
    curs: Cursor[Any],
    scope_tenant: UUID | None,
    filters: dict[str, Any],
    limit: int,
    cursor: str | None,
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of entries, newest first; ``since``/``until`` bound ``at`` half-open."""
    unknown = set(filters) - {*FILTERS, "since", "until"}
    if unknown:
        raise TypeError(f"unknown audit filters: {sorted(unknown)}")
    filters = {k: v for k, v in filters.items() if v is not None}
    if scope_tenant is not None:
        if filters.get("tenant_id", scope_tenant) != scope_tenant:
            return [], None  # another tenant's entries don't exist for this caller
        filters["tenant_id"] = scope_tenant
    where, params = ["true"], []
    for column in FILTERS:
        if column in filters:
            where.append(f"{column} = %s")
            params.append(filters[column])
    if "since" in filters:
        where.append("at >= %s")
        params.append(filters["since"])
    if "until" in filters:
        where.append("at < %s")
        params.append(filters["until"])
    if cursor:
        where.append("position < %s")
        params.append(decode_position(cursor))
    query = (
        f"SELECT {COLUMNS} FROM {SCHEMA}.entries WHERE {' AND '.join(where)}"
        " ORDER BY position DESC LIMIT %s"
    )
    return fetch_page(curs, query, params, limit, lambda r: encode_position(r["position"]), _shape)
