"""Request dependencies: the container, the authenticated caller, rate limiting."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from application.auth import Principal
from application.errors import AuthenticationError
from interfaces.bootstrap import Container, request_head


async def get_container(request: Request) -> Container:
    return request.app.state.container


ContainerDep = Annotated[Container, Depends(get_container)]


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


async def authenticate(request: Request, container: ContainerDep) -> Principal:
    principal, head = await run_in_threadpool(_authenticate, request, container)
    # Set in the request's own context, so that the route (run in a copy of it) sees it.
    request_head.set(head)
    return principal


def _authenticate(request: Request, container: Container) -> tuple[Principal, int | None]:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationError("missing bearer token: send 'Authorization: Bearer <token>'")
    limiter = container.rate_limiter
    key_id = container.app.key_id_of(token)
    # One round trip counts the request, reads the key's stored version (a key unchanged since
    # it last authenticated needn't be loaded, a changed one always is) and tells whether the
    # read models had reached the log's head.
    subject = "admin" if key_id is None else f"key:{key_id}"
    retry_after, version, head = limiter.hit_and_version(subject, key_id)
    principal = container.app.authenticate(token, client_ip(request), stored_version=version)
    if retry_after is not None:
        raise HTTPException(
            status_code=429,
            detail=f"rate limit of {limiter.per_minute} requests per minute exceeded",
            headers={"Retry-After": str(retry_after)},
        )
    return principal, head


async def management_principal(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
    """Management routes refuse router (inference) keys."""
    principal.check_management()
    return principal


Caller = Annotated[Principal, Depends(management_principal)]


def idempotency_key(request: Request) -> str | None:
    return request.headers.get("idempotency-key") or None


def run_idempotent(
    container: Container,
    principal: Principal,
    key: str | None,
    request_body: Any,
    create: Any,
) -> tuple[int, Any]:
    """Run a creating command once per Idempotency-Key; a retry gets the first response."""
    if key is None:
        return create()
    return container.idempotency.run(principal.actor.id, key, request_body, create)
