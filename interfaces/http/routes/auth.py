"""Sign-up and sign-in (``/auth/...`` at the root, as seed 003 documents them): answers a user
and a JWT valid 7 days, to send as ``Authorization: Bearer <token>``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from application.users import SignedIn
from interfaces.db.stores import RateLimiter
from interfaces.http.deps import AsyncPoolDep, SettingsDep, UsersDep, client_ip, part
from interfaces.http.openapi import also_answers
from interfaces.http.schemas import Credentials, SignedInPublic, SignedInUser, UserCreate

router = APIRouter(tags=["auth"])
Limiter = Annotated[RateLimiter, Depends(part("rate_limiter"))]


def public(signed: SignedIn) -> SignedInPublic:
    return SignedInPublic(
        user=SignedInUser(id=signed.user_id, email=signed.email, tenant_id=signed.tenant_id),
        token=signed.token,
        expires_in=signed.expires_in,
    )


# 403: sign-up is closed (HOSTPLANE_SIGNUP=closed); 409: the email is registered already.
@router.post(
    "/auth/register",
    status_code=201,
    response_model=SignedInPublic,
    responses=also_answers(403, 409),
)
def register(body: UserCreate, commands: UsersDep, request: Request) -> SignedInPublic:
    """Sign up: a new user with a tenant of its own, and a token. A weak password is a 400
    that says why."""
    return public(commands.register(body.email, body.password, client_ip(request)))


@router.post("/auth/login", response_model=SignedInPublic, responses=also_answers(401, 429))
async def login(
    body: Credentials,
    commands: UsersDep,
    limiter: Limiter,
    pool: AsyncPoolDep,
    settings: SettingsDep,
    request: Request,
) -> SignedInPublic:
    """Sign in: a fresh token. A wrong email and a wrong password get the same 401; attempts
    are limited per email and per client IP (429 with Retry-After)."""
    limits = {
        f"login-email:{commands.fingerprint_of(body.email)}": settings.login_per_email_per_minute,
        f"login-ip:{client_ip(request)}": settings.login_per_ip_per_minute,
    }
    retry_after = await limiter.hit_each(pool, limits)
    if retry_after is not None:
        raise HTTPException(
            status_code=429,
            detail="too many sign-in attempts: retry later",
            headers={"Retry-After": str(retry_after)},
        )
    return public(await run_in_threadpool(commands.login, body.email, body.password))
