"""Helpers every route module shares."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

from fastapi import Query

from application.auth import Principal
from application.errors import NotFoundError
from domain.base import InvalidValueError

LimitQuery = Query(50, ge=1, le=500, description="Page size.")
CursorQuery = Query(None, description="Opaque cursor from the previous page's next_cursor.")


def found(row: dict[str, Any] | None, kind: str, ident: object) -> dict[str, Any]:
    if row is None:
        raise NotFoundError(kind, str(ident))
    return row


def page(rows: list[dict[str, Any]], next_cursor: str | None) -> dict[str, Any]:
    return {"data": rows, "has_more": next_cursor is not None, "next_cursor": next_cursor}


def listing(fetch: Callable[[], tuple[list[dict[str, Any]], str | None]]) -> dict[str, Any]:
    try:
        rows, next_cursor = fetch()
    except ValueError as e:  # a malformed cursor
        raise InvalidValueError("cursor", str(e)) from None
    return page(rows, next_cursor)


def scoped_listing(
    caller: Principal,
    tenant_id: UUID | None,
    fetch: Callable[[UUID | None], tuple[list[dict[str, Any]], str | None]],
) -> dict[str, Any]:
    """A list limited to the caller's tenant; filtering on another tenant gives an empty page."""
    scope = caller.tenant_filter()
    if scope is not None and tenant_id is not None and tenant_id != scope:
        return page([], None)
    return listing(lambda: fetch(scope or tenant_id))
