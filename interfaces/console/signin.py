"""Signing in and out of the console, and the admin's list of tenants."""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import HTTPException, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from application.errors import ApplicationError
from domain.base import DomainError
from interfaces.console.web import (
    PRE_SESSION,
    SESSION,
    SESSION_SECONDS,
    SignedOut,
    _container,
    csrf_of,
    csrf_refused,
    form_of,
    principal_of,
    render,
    router,
    seal,
    to_login,
)
from interfaces.http.deps import client_ip
from interfaces.http.routes import auth as auth_routes
from interfaces.http.schemas import Credentials
from projections.readmodels import tenants


@router.get("")
async def home(request: Request) -> Response:
    try:
        caller = await principal_of(request)
    except SignedOut:
        return to_login()
    if not caller.is_admin:
        return RedirectResponse(f"/console/t/{caller.tenant_id}/overview", status_code=303)

    def listed() -> list[dict[str, Any]]:
        with _container(request).gate.reading("tenants") as curs:
            return tenants.list_tenants(curs, None, 200, None)[0]

    rows = await run_in_threadpool(listed)
    return render(request, "tenants.html", {"tenants": rows}, caller)


@router.get("/login")
async def login_form(request: Request, error: str | None = None, status: int = 200) -> Response:
    nonce = request.cookies.get(PRE_SESSION) or secrets.token_urlsafe(24)
    response = render(
        request, "login.html", {"error": error, "csrf": csrf_of(request, nonce)}, status=status
    )
    response.set_cookie(
        PRE_SESSION, nonce, httponly=True, samesite="strict", path="/console", secure=False
    )
    return response


def signed_in(request: Request, token: str) -> Response:
    response = RedirectResponse("/console", status_code=303)
    response.set_cookie(
        SESSION,
        seal(request, token),
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="strict",
        path="/console",
        secure=request.url.scheme == "https",
    )
    response.delete_cookie(PRE_SESSION, path="/console")
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    form = await form_of(request)
    refused = csrf_refused(request, form, request.cookies.get(PRE_SESSION), None)
    if refused is not None:
        return refused
    container = _container(request)
    if form.get("token"):
        token = form["token"].strip()
        # Guessing tokens is counted against the client's IP as guessing passwords is.
        retry_after = await container.rate_limiter.hit_each(
            request.app.state.async_pool,
            {f"login-ip:{client_ip(request)}": container.settings.login_per_ip_per_minute},
        )
        if retry_after is not None:
            return await login_form(request, "Too many sign-in attempts: retry later.", 429)
        try:
            principal = await run_in_threadpool(
                container.auth.authenticate, token, client_ip(request)
            )
            principal.check_management()
        except (ApplicationError, DomainError) as e:
            return await login_form(request, f"That token was refused: {e}", 401)
        return signed_in(request, token)
    try:
        # The very route /auth/login: its attempt limits and its answers.
        signed = await auth_routes.login(
            Credentials(email=form.get("email", ""), password=form.get("password", "")),
            container.users,
            container.rate_limiter,
            request.app.state.async_pool,
            container.settings,
            request,
        )
    except HTTPException as e:
        return await login_form(request, str(e.detail), e.status_code)
    except (ApplicationError, DomainError, ValueError):
        return await login_form(request, "Wrong email or password.", 401)
    return signed_in(request, signed.token)


@router.post("/logout")
async def logout(request: Request) -> Response:
    form = await form_of(request)
    refused = csrf_refused(request, form, request.cookies.get(SESSION), None)
    if refused is not None:
        return refused
    response = to_login()
    response.delete_cookie(SESSION, path="/console")
    return response
