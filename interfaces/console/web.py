"""What every console page shares: the router, the templates, the sealed session cookie, the
CSRF token, the signed-in caller, rendering and the error page.

The session is one HttpOnly, SameSite=Strict cookie holding the caller's bearer token (a user's
JWT from signing in, or a pasted admin token or management key) sealed with AES-GCM under a
fresh data key wrapped by the master key (``SecretBox``): the token is never in the cookie in
clear. Every form carries a CSRF token, an HMAC of the session cookie (of a pre-session nonce
cookie on the sign-in form); a POST without the right one is a 403.
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs
from uuid import UUID

from fastapi import APIRouter, Request
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
from projections.readmodels import tenants

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


async def tenant_page(
    request: Request,
    tenant_id: UUID,
    name: str,
    page: str,
    read: Callable[[Principal, dict[str, Any]], dict[str, Any]],
) -> Response:
    """A signed-in GET page about one tenant: ``read(caller, tenant)`` (run in the thread pool,
    after the tenant check) gives the template's context; errors become the error page."""
    try:
        caller = await principal_of(request)
    except SignedOut:
        return to_login()

    def build() -> dict[str, Any]:
        tenant = check_tenant(request, caller, tenant_id)
        return {"tenant": tenant, "page": page, **read(caller, tenant)}

    try:
        context = await run_in_threadpool(build)
    except (ApplicationError, DomainError) as e:
        return failed(request, e, caller)
    return render(request, name, context, caller)


async def tenant_action(
    request: Request,
    tenant_id: UUID,
    act: Callable[[Principal, dict[str, str]], str],
) -> Response:
    """A signed-in, CSRF-checked form POST about one tenant: ``act(caller, form)`` (run in the
    thread pool, after the tenant check) does the work and gives the console path to go to next
    (303, so that a reload does not post again); errors become the error page."""
    signed = await signed_in_form(request)
    if isinstance(signed, Response):
        return signed
    caller, form = signed

    def run() -> str:
        check_tenant(request, caller, tenant_id)
        return act(caller, form)

    try:
        where = await run_in_threadpool(run)
    except (ApplicationError, DomainError) as e:
        return failed(request, e, caller)
    except ValueError as e:  # a form field that its schema refused
        return render(request, "error.html", {"status": 400, "message": str(e)}, caller, 400)
    return RedirectResponse(where, status_code=303)
