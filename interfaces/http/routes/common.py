"""Helpers every route module shares."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate
from fastapi import Query, Request, Response
from pydantic import BaseModel

from application.auth import Principal
from application.errors import NotFoundError
from application.idempotency import Created
from domain.base import InvalidValueError
from interfaces.bootstrap import Container
from interfaces.db.stores import IdempotencyConflictError
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
    recover: Callable[[Created], BaseModel],
) -> Any:
    """Run a creating command (honouring ``Idempotency-Key``) and answer 201 with its result.

    ``recover`` builds the same answer for a retry whose first request created the resource
    but died before its response was stored: from the ids (and once-shown secret) that the
    event store recorded with the save. The resource is shown as it is now.
    """

    def run() -> tuple[int, Any]:
        return 201, create().model_dump(mode="json")

    def rerun(created: Created) -> tuple[int, Any]:
        return 201, recover(created).model_dump(mode="json")

    # The body as pydantic writes it: a number too large for orjson (beyond 64 bits) must reach
    # the command, which refuses it as a 400, rather than fail the fingerprint as a 500.
    request_fingerprint = {"path": request.url.path, "body": body.model_dump_json()}
    status, payload = run_idempotent(
        container, caller, idempotency_key(request), request_fingerprint, run, rerun
    )
    response.status_code = status
    return payload


def created_id(container: Container, created: Created, cls: type[Aggregate]) -> UUID:
    """The id of the ``cls`` aggregate that a recorded request created."""
    for ident in created.ids:
        if container.app.find(cls, ident) is not None:
            return ident
    raise IdempotencyConflictError(  # no command saves without creating what it returns
        "the request with this Idempotency-Key was saved, but what it created is not found"
    )


def shown_once(created: Created) -> str:
    """The once-shown secret of a recorded request (always saved with what shows one)."""
    if created.secret is None:
        raise IdempotencyConflictError(
            "the request with this Idempotency-Key was saved without its secret: "
            f"it created {', '.join(map(str, created.ids))}"
        )
    return created.secret
