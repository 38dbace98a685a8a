"""Request dependencies: the container, the authenticated caller, rate limiting."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request

from application.auth import Principal
from application.errors import AuthenticationError
from interfaces.bootstrap import Container


async def get_container(request: Request) -> Container:
    return request.app.state.container


ContainerDep = Annotated[Container, Depends(get_container)]


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def authenticate(request: Request, container: ContainerDep) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationError("missing bearer token: send 'Authorization: Bearer <token>'")
    limiter = container.rate_limiter
    key_id = container.app.key_id_of(token)
    if key_id is None:  # the admin token
        retry_after, version = limiter.hit("admin"), None
    else:
        # One round trip counts the request and reads the key's stored version, so that a key
        # unchanged since it last authenticated needn't be loaded and a changed one always is.
        retry_after, version = limiter.hit_and_version(f"key:{key_id}", key_id)
    principal = container.app.authenticate(token, client_ip(request), stored_version=version)
    if retry_after is not None:
        raise HTTPException(
            status_code=429,
            detail=f"rate limit of {limiter.per_minute} requests per minute exceeded",
            headers={"Retry-After": str(retry_after)},
        )
    return principal


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
