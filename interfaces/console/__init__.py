"""The web console at ``/console``: server-rendered pages (Jinja2) over the same use cases and
read models as the /api/v1 routes.

The session is one HttpOnly, SameSite=Strict cookie holding the caller's bearer token (a user's
JWT from signing in, or a pasted admin token or management key) sealed with AES-GCM under a
fresh data key wrapped by the master key (``SecretBox``): the token is never in the cookie in
clear. Every form carries a CSRF token, an HMAC of the session cookie (of a pre-session nonce
cookie on the sign-in form); a POST without the right one is a 403.
"""

from __future__ import annotations

import base64
import hmac
import secrets
from calendar import monthrange
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs
from uuid import UUID

from fastapi import APIRouter, HTTPException, Request
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from application.auth import Principal
from application.errors import ApplicationError, NotFoundError
from domain.base import DomainError
from interfaces.http.deps import client_ip
from interfaces.http.errors import ERROR_TABLE
from interfaces.http.observe import note_of
from interfaces.http.routes import auth as auth_routes
from interfaces.http.routes.budgets import read_budget
from interfaces.http.schemas import Credentials, KeyCreate
from projections.readmodels import budgets, keys, tenants
from projections.reports import billing

HERE = Path(__file__).parent
SESSION = "hostplane_console"
PRE_SESSION = "hostplane_console_pre"
CSRF_PURPOSE = "console csrf v1"
SESSION_AAD = "console session v1"
SESSION_SECONDS = 7 * 24 * 3600  # a user's JWT lives as long

templates = Jinja2Templates(directory=str(HERE / "templates"))
router = APIRouter(prefix="/console", include_in_schema=False)
static = StaticFiles(directory=str(HERE / "static"))


class SignedOut(Exception):
    """No valid session: the page redirects to the sign-in form."""


def _container(request: Request) -> Any:
    return request.app.state.container


def seal(request: Request, token: str) -> str:
    box = _container(request).secret_box
    wrapped = box.new_wrapped_data_key()
    sealed = box.encrypt(wrapped, token)
    return ".".join(base64.urlsafe_b64encode(b).decode().rstrip("=") for b in (wrapped, sealed))


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def unseal(request: Request, cookie: str) -> str:
    box = _container(request).secret_box
    try:
        wrapped, sealed = (_unb64(p) for p in cookie.split("."))
        return box.decrypt(wrapped, sealed)
    except Exception:  # tampered, truncated or sealed under another master key
        raise SignedOut() from None


def csrf_of(request: Request, value: str) -> str:
    return _container(request).secret_box.fingerprint(CSRF_PURPOSE, value)


async def form_of(request: Request) -> dict[str, str]:
    """The urlencoded form (bounded by the app's body limit), one value per field."""
    body = (await request.body()).decode("utf-8", "replace")
    return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}


def csrf_refused(
    request: Request, form: dict[str, str], bound_to: str | None, principal: Principal | None
) -> Response | None:
    """The 403 page for a form without the CSRF token of its session; ``None`` when it has it."""
    sent = form.get("csrf", "")
    if bound_to and hmac.compare_digest(sent, csrf_of(request, bound_to)):
        return None
    message = "This form has expired or did not come from this console: reload the page."
    return render(request, "error.html", {"status": 403, "message": message}, principal, 403)


async def principal_of(request: Request) -> Principal:
    cookie = request.cookies.get(SESSION)
    if not cookie:
        raise SignedOut()
    token = unseal(request, cookie)
    auth = _container(request).auth
    try:
        principal = await run_in_threadpool(auth.authenticate, token, client_ip(request))
        principal.check_management()
    except (ApplicationError, DomainError):
        raise SignedOut() from None
    note = note_of(request.scope)
    if note is not None:  # the request's log line names its tenant and key (or user)
        note.caller(principal.tenant_id, principal.key_id or principal.user_id)
    return principal


def render(
    request: Request,
    name: str,
    context: dict[str, Any],
    principal: Principal | None = None,
    status: int = 200,
) -> Response:
    cookie = request.cookies.get(SESSION)
    base = {
        "principal": principal,
        "csrf": csrf_of(request, cookie) if cookie and principal else "",
    }
    response = templates.TemplateResponse(request, name, {**base, **context}, status_code=status)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    # Only the console's own files: no inline script, nothing from elsewhere.
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; frame-ancestors 'none'; form-action 'self'"
    )
    return response


def status_of(exc: Exception) -> int:
    return next((s for t, s, _, _ in ERROR_TABLE if isinstance(exc, t)), 500)


def failed(request: Request, exc: Exception, principal: Principal | None) -> Response:
    status = status_of(exc)
    return render(request, "error.html", {"status": status, "message": str(exc)}, principal, status)


def to_login() -> Response:
    return RedirectResponse("/console/login", status_code=303)


def check_tenant(request: Request, caller: Principal, tenant_id: UUID) -> dict[str, Any]:
    """The tenant a page is about: another tenant's is not found (never forbidden)."""
    gate = _container(request).gate
    with gate.reading("tenants") as curs:
        row = tenants.get_tenant(curs, tenant_id, caller.tenant_filter())
    if row is None:
        raise NotFoundError("tenant", tenant_id)
    return row


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


def month_of(now: datetime) -> tuple[datetime, datetime]:
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return start, start + timedelta(days=monthrange(now.year, now.month)[1])


def chart(days: list[dict[str, Any]]) -> dict[str, Any]:
    """Bars of requests per day, scaled to the busiest day (the SVG's geometry)."""
    width, height = 24, 120
    top = max((d["requests"] for d in days), default=0) or 1
    bars = []
    for i, d in enumerate(days):
        h = round(d["requests"] / top * height)
        tokens = d["prompt_tokens"] + d["completion_tokens"]
        bars.append({**d, "tokens": tokens, "x": i * width, "y": height - h, "h": h})
    return {"bars": bars, "width": width * max(len(days), 1), "height": height, "bar": width - 4}


def top(rows: list[dict[str, Any]], n: int = 5) -> list[dict[str, Any]]:
    """The ``n`` rows that cost most, then the busiest."""
    return sorted(rows, key=lambda r: (-Decimal(r["total_cost"]), -r["requests"]))[:n]


@router.get("/t/{tenant_id}/overview")
async def overview(request: Request, tenant_id: UUID) -> Response:
    try:
        caller = await principal_of(request)
    except SignedOut:
        return to_login()
    container = _container(request)

    def read() -> dict[str, Any]:
        tenant = check_tenant(request, caller, tenant_id)
        now = datetime.now(UTC)
        start, end = month_of(now)
        with container.gate.reading("usage", "costs", "budgets") as curs:
            summary = billing.summary(curs, tenant_id, start, end, now)
            rows = budgets.list_budgets(curs, tenant_id, 50, None)[0]
        with container.gate.reading("keys") as curs:
            names = {str(k["id"]): k["name"] for k in keys.list_keys(curs, tenant_id, 500, None)[0]}
        kept = [read_budget(container.gate, caller, r["id"]) for r in rows]
        top_keys = [
            {**k, "name": names.get(k["key_id"], "(a user or deleted key)")}
            for k in top(summary["by_key"])
        ]
        return {
            "tenant": tenant,
            "summary": summary,
            "budgets": kept,
            "chart": chart(summary["by_day"]),
            "top_models": top(summary["by_model"]),
            "top_keys": top_keys,
        }

    try:
        context = await run_in_threadpool(read)
    except (ApplicationError, DomainError) as e:
        return failed(request, e, caller)
    return render(request, "overview.html", {**context, "page": "overview"}, caller)


def keys_page(
    request: Request, caller: Principal, tenant_id: UUID, created: dict[str, Any] | None = None
) -> Response:
    tenant = check_tenant(request, caller, tenant_id)
    with _container(request).gate.reading("keys") as curs:
        rows = keys.list_keys(curs, tenant_id, 200, None)[0]
    context = {"tenant": tenant, "keys": rows, "created": created, "page": "keys"}
    return render(request, "keys.html", context, caller, 201 if created else 200)


@router.get("/t/{tenant_id}/keys")
async def keys_list(request: Request, tenant_id: UUID) -> Response:
    try:
        caller = await principal_of(request)
    except SignedOut:
        return to_login()
    try:
        return await run_in_threadpool(keys_page, request, caller, tenant_id)
    except (ApplicationError, DomainError) as e:
        return failed(request, e, caller)


async def signed_in_form(request: Request) -> tuple[Principal, dict[str, str]] | Response:
    """A signed-in caller's form with its session's CSRF token; else the answer to give
    (back to sign-in, or the 403 page)."""
    try:
        caller = await principal_of(request)
    except SignedOut:
        return to_login()
    form = await form_of(request)
    refused = csrf_refused(request, form, request.cookies.get(SESSION), caller)
    return (caller, form) if refused is None else refused


@router.post("/t/{tenant_id}/keys")
async def key_create(request: Request, tenant_id: UUID) -> Response:
    signed = await signed_in_form(request)
    if isinstance(signed, Response):
        return signed
    caller, form = signed

    def create() -> Response:
        check_tenant(request, caller, tenant_id)
        body = KeyCreate(name=form.get("name", ""), kind=form.get("kind") or "router")
        key, secret = _container(request).keys.issue_key(caller, tenant_id, **body.model_dump())
        return keys_page(request, caller, tenant_id, {"name": key.name, "secret": secret})

    try:
        return await run_in_threadpool(create)
    except (ApplicationError, DomainError) as e:
        return failed(request, e, caller)
    except ValueError:  # the form's fields, as KeyCreate validates them
        message = "a key needs a name of 1 to 63 characters"
        return render(request, "error.html", {"status": 400, "message": message}, caller, 400)


async def key_action(request: Request, tenant_id: UUID, key_id: UUID, action: str) -> Response:
    signed = await signed_in_form(request)
    if isinstance(signed, Response):
        return signed
    caller, form = signed
    commands = _container(request).keys

    def act() -> None:
        check_tenant(request, caller, tenant_id)
        key = commands.get_key_for(caller, key_id)
        if key.tenant_id != tenant_id:
            raise NotFoundError("key", key_id)
        if action == "delete":
            commands.delete_key(caller, key_id)
        else:
            commands.set_key_disabled(caller, key_id, action == "disable")

    try:
        await run_in_threadpool(act)
    except (ApplicationError, DomainError) as e:
        return failed(request, e, caller)
    return RedirectResponse(f"/console/t/{tenant_id}/keys", status_code=303)


@router.post("/t/{tenant_id}/keys/{key_id}/disable")
async def key_disable(request: Request, tenant_id: UUID, key_id: UUID) -> Response:
    return await key_action(request, tenant_id, key_id, "disable")


@router.post("/t/{tenant_id}/keys/{key_id}/enable")
async def key_enable(request: Request, tenant_id: UUID, key_id: UUID) -> Response:
    return await key_action(request, tenant_id, key_id, "enable")


@router.post("/t/{tenant_id}/keys/{key_id}/delete")
async def key_delete(request: Request, tenant_id: UUID, key_id: UUID) -> Response:
    return await key_action(request, tenant_id, key_id, "delete")
