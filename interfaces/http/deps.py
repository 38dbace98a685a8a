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
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError("missing bearer token: send 'Authorization: Bearer <token>'")
    principal = container.app.authenticate(token.strip(), client_ip(request))
    retry_after = container.rate_limiter.hit(principal.actor.id)
    if retry_after is not None:
        raise HTTPException(
            status_code=429,
            detail=f"rate limit of {container.rate_limiter.per_minute} requests per minute exceeded",
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
