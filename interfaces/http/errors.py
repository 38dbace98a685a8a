"""One table from errors to HTTP statuses, and the OpenAI error shape for all of them."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from application.errors import (
    AuthenticationError,
    ConcurrentModificationError,
    ForbiddenError,
    NotFoundError,
    ProviderError,
)
from application.idempotency import ClaimLostError
from application.users import InvalidCredentialsError
from domain.apikey import KeyIpNotAllowedError, KeyUnusableError
from domain.base import ConflictError, DomainError, InvalidValueError
from domain.instance import NotDeployedError
from domain.usage import UsageBatchInvalidError
from interfaces.db.pools import (
    DATABASE_ERRORS,
    DATABASE_RETRY_AFTER,
    DATABASE_UNAVAILABLE_MESSAGE,
)
from interfaces.db.stores import IdempotencyConflictError
from projections.engine.stalls import ReadModelStalledError

log = logging.getLogger(__name__)

# (status, type, code), most specific first.
ERROR_TABLE: list[tuple[type[Exception], int, str, str]] = [
    (InvalidValueError, 400, "invalid_request_error", "invalid_value"),
    (InvalidCredentialsError, 401, "authentication_error", "invalid_credentials"),
    (AuthenticationError, 401, "authentication_error", "invalid_api_key"),
    (KeyUnusableError, 401, "authentication_error", "invalid_api_key"),
    (KeyIpNotAllowedError, 403, "permission_error", "ip_not_allowed"),
    (ForbiddenError, 403, "permission_error", "forbidden"),
    (NotFoundError, 404, "invalid_request_error", "not_found"),
    (ConcurrentModificationError, 409, "conflict_error", "concurrent_modification"),
    (IdempotencyConflictError, 409, "conflict_error", "idempotency_conflict"),
    (ClaimLostError, 409, "conflict_error", "idempotency_conflict"),
    (NotDeployedError, 409, "conflict_error", "not_deployed"),
    (ConflictError, 409, "conflict_error", "conflict"),
    (ProviderError, 502, "upstream_error", "provider_error"),
    (ReadModelStalledError, 503, "service_unavailable", "read_model_stalled"),
    (DomainError, 400, "invalid_request_error", "invalid_request"),
]

HTTP_CODES = {
    400: ("invalid_request_error", "bad_request"),
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", "forbidden"),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    409: ("conflict_error", "conflict"),
    413: ("invalid_request_error", "request_too_large"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    503: ("service_unavailable", "not_ready"),
}


def error_response(
    status: int,
    message: str,
    type_: str,
    code: str,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {"message": message, "type": type_, "code": code, "param": param}
    return Response(
        dumps({"error": body}),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def dumps(content: Any) -> bytes:
    """JSON of an error, even one that repeats text which is not Unicode (a lone surrogate)."""
    try:
        return orjson.dumps(content)
    except orjson.JSONEncodeError:
        return orjson.dumps(_escaped(content))


def _escaped(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode()
    if isinstance(value, dict):
        return {_escaped(k): _escaped(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_escaped(v) for v in value]
    return value


def _field_of(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def validation(request: Request, exc: RequestValidationError) -> Response:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request"}
        field = _field_of(tuple(first.get("loc", ())))
        message = f"{field}: {first.get('msg', 'invalid value')}"
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more)"
        return error_response(400, message, "invalid_request_error", "invalid_value", field)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        type_, code = HTTP_CODES.get(exc.status_code, ("api_error", "error"))
        message = exc.detail if isinstance(exc.detail, str) else "error"
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route for {request.method} {request.url.path}"
        return error_response(exc.status_code, message, type_, code, headers=exc.headers)

    @app.exception_handler(UsageBatchInvalidError)
    async def invalid_batch(request: Request, exc: UsageBatchInvalidError) -> Response:
        body = {
            "message": str(exc),
            "type": "invalid_request_error",
            "code": "invalid_usage_batch",
            "param": "records",
            "records": [p.__dict__ for p in exc.problems],
        }
        return Response(dumps({"error": body}), status_code=400, media_type="application/json")

    for exc_type, status, type_, code in ERROR_TABLE:
        app.add_exception_handler(exc_type, _handler(status, type_, code))

    for exc_type in DATABASE_ERRORS:
        app.add_exception_handler(exc_type, database_unavailable)


class UnexpectedErrorsAs500:
    """Answer any other exception with a 500 in the OpenAI shape, and keep the connection open.

    An ``Exception`` handler runs in Starlette's ServerErrorMiddleware, which sends its 500 and
    then re-raises; uvicorn closes the connection of an app that raised, so the client's next
    request on it failed (ECONNRESET). This middleware sits inside that one and ends the
    request with the 500 sent. The answer names no internals; the log has the traceback. A
    response already under way (a streamed export) cannot become a 500: that error is raised
    on, and the connection closes, so the client sees the answer cut short.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched_send(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        except Exception as exc:
            if started:
                raise
            log.error("unexpected error on %s %s", scope["method"], scope["path"], exc_info=exc)
            response = error_response(500, "internal server error", "api_error", "internal_error")
            await response(scope, receive, send)


async def database_unavailable(request: Request, exc: Exception) -> Response:
    log.warning(
        "database unavailable on %s %s: %s: %s",
        request.method,
        request.url.path,
        type(exc).__name__,
        exc,
    )
    return error_response(
        503,
        DATABASE_UNAVAILABLE_MESSAGE,
        "service_unavailable",
        "database_unavailable",
        headers={"Retry-After": str(DATABASE_RETRY_AFTER)},
    )


def _handler(status: int, type_: str, code: str) -> Any:
    async def handle(request: Request, exc: Exception) -> Response:
        param = getattr(exc, "field", None)
        message = str(exc)
        if param and param not in message:
            message = f"{param}: {message}"
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        retry_after = getattr(exc, "retry_after", None)  # a 409 in progress, a 503
        if retry_after is not None:
            headers = {"Retry-After": str(retry_after)}
        return error_response(status, message, type_, code, param, headers)

    return handle
