"""Helpers every route module shares."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

import anyio.from_thread
from fastapi import Query, Request, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from application.auth import Principal
from application.errors import NotFoundError
from domain.base import InvalidValueError
from interfaces.bootstrap import Container
from interfaces.http.deps import idempotency_key, run_idempotent

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


def create_once(
    container: Container,
    caller: Principal,
    request: Request,
    response: Response,
    body: BaseModel,
    create: Callable[[], BaseModel],
) -> Any:
    """Run a creating command (honouring ``Idempotency-Key``) and answer 201 with its result."""

    def run() -> tuple[int, Any]:
        return 201, create().model_dump(mode="json")

    request_fingerprint = {"path": request.url.path, "body": body.model_dump(mode="json")}
    status, payload = run_idempotent(
        container, caller, idempotency_key(request), request_fingerprint, run
    )
    response.status_code = status
    return payload


async def create_once_async(
    container: Container,
    caller: Principal,
    request: Request,
    response: Response,
    body: BaseModel,
    create: Callable[[], Awaitable[BaseModel]],
) -> Any:
    """``create_once`` for a command that runs on the event loop. Without an Idempotency-Key it
    is awaited right there; with one, the key's bookkeeping (blocking) runs in a thread, which
    calls back into the loop for the command."""
    if idempotency_key(request) is None:
        response.status_code = 201
        return (await create()).model_dump(mode="json")
    return await run_in_threadpool(
        create_once,
        container,
        caller,
        request,
        response,
        body,
        lambda: anyio.from_thread.run(create),
    )
