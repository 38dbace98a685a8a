"""Request dependencies: the container, the authenticated caller, rate limiting."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg_pool import AsyncConnectionPool
from starlette.concurrency import run_in_threadpool

from application.auth import Principal
from application.errors import AuthenticationError
from interfaces.bootstrap import Container, request_head


async def get_container(request: Request) -> Container:
    return request.app.state.container


ContainerDep = Annotated[Container, Depends(get_container)]


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


async def get_async_pool(request: Request) -> AsyncConnectionPool[Any]:
    return request.app.state.async_pool


AsyncPoolDep = Annotated[AsyncConnectionPool[Any], Depends(get_async_pool)]


# Puts the bearer scheme in the OpenAPI document, on every operation that authenticates (which
# is how the document knows those answer 401, 403, 429 and 503). The token is read by
# bearer_token, which answers 401 in the OpenAI shape.
BEARER = HTTPBearer(
    scheme_name="bearer",
    description="The admin token (HOSTPLANE_ADMIN_TOKEN) or a tenant's management key.",
    auto_error=False,
)
BearerDoc = Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)]


async def authenticate(request: Request, container: ContainerDep, _: BearerDoc) -> Principal:
    token = bearer_token(request)
    app = container.app
    # Usually all of this runs on the event loop: one query counts the request, reads the key's
    # stored version (a key in memory at that version needn't be loaded again) and tells whether
    # the read models had reached the log's head. A thread is used only for the event store:
    # to load a key, or an admin token kept there (no HOSTPLANE_ADMIN_TOKEN).
    cheap = app.knows_without_loading(token)
    key_id = app.key_id_of(token) if cheap else await run_in_threadpool(app.key_id_of, token)
    retry_after, version, head = await container.rate_limiter.hit_and_version(
        request.app.state.async_pool, subject(key_id), key_id
    )
    ip = client_ip(request)
    principal = app.authenticate_cached(token, key_id, ip, version) if cheap else None
    if principal is None:
        principal = await run_in_threadpool(app.authenticate, token, ip, None, version)
    check_rate(container, retry_after)
    # Set in the request's own context, so that the route (run in a copy of it) sees it.
    request_head.set(head)
    return principal


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationError("missing bearer token: send 'Authorization: Bearer <token>'")
    return token


def subject(key_id: UUID | None) -> str:
    """Whom a request is counted against for rate limiting."""
    return "admin" if key_id is None else f"key:{key_id}"


def check_rate(container: Container, retry_after: int | None) -> None:
    if retry_after is not None:
        raise HTTPException(
            status_code=429,
            detail=f"rate limit of {container.rate_limiter.per_minute} requests per minute exceeded",
            headers={"Retry-After": str(retry_after)},
        )


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
    recover: Any,
) -> tuple[int, Any]:
    """Run a creating command once per Idempotency-Key; a retry gets the first response.

    ``recover`` answers a retry whose first request saved its events but died before its
    response was stored (``IdempotencyStore``): from the ``Created`` record, as GET would.
    """
    if key is None:
        return create()
    return container.idempotency.run(principal.actor.id, key, request_body, create, recover)
