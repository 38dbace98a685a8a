"""The OpenAPI document: every status an operation can answer, derived from its route.

Most statuses follow from what a route is made of, so they are derived here rather than
listed per operation (a list of 60 would drift): an authenticated route can answer 401, 403,
429 and 503; any request can be a 400; a body can be too large (413); an ``*_id`` in the path
or the body names something that may not exist, or be another tenant's (404); a write can
conflict (409: an Idempotency-Key in use, a concurrent change, a state that forbids it). What
only some routes do (a provider's failure, 502) they declare with ``responses=also_answers(...)``.
405 is no operation's answer (it is what a path answers for a method it has no operation for),
so the document says it once, in its description.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from interfaces.http.usage_body import UsageBatchIn

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "code": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "records": {
                    "type": "array",
                    "items": {"type": "object"},
                    "description": "Usage batches only: every record refused, and why.",
                },
            },
            "required": ["message", "type", "code"],
        }
    },
    "required": ["error"],
}

RETRY_AFTER = {
    "description": "Seconds to wait before retrying.",
    "schema": {"type": "integer", "minimum": 0},
}

# What each error status means in this API (the OpenAI error shape's ``code`` in brackets).
WHY = {
    400: "Bad input: the field is named in `param` (invalid_value, invalid_request).",
    401: "No bearer token, or one that is unknown, expired, disabled or revoked (invalid_api_key).",
    403: (
        "Not allowed: a router key on a management route, a client IP outside the key's "
        "allowlist, or an admin-only operation with a tenant's key (forbidden, ip_not_allowed)."
    ),
    404: "Not found, or another tenant's (not_found).",
    409: (
        "Conflict: an Idempotency-Key reused or still in progress, a concurrent change, a name "
        "taken, or a state that forbids the change (conflict, concurrent_modification, "
        "idempotency_conflict, not_deployed)."
    ),
    413: "The request body is larger than HOSTPLANE_MAX_BODY_BYTES (request_too_large).",
    429: "Rate limited: too many requests for this token this minute (rate_limit_exceeded).",
    502: "The GPU provider or the upstream failed (provider_error).",
    503: (
        "Not ready: the database is unavailable, a read model is stalled or behind "
        "(database_unavailable, read_model_stalled, not_ready). Retry after Retry-After."
    ),
}

METHOD_NOT_ALLOWED = (
    "A known path with a method it does not support answers 405 (method_not_allowed), and an "
    "unknown path 404, both in the OpenAI error shape."
)

ERROR_REF = "#/components/schemas/Error"

# Times and dates given as strings, documented as what they must be (``json_schema_extra=``).
DATE = {"type": "string", "format": "date"}
DATE_OR_TIME = {"anyOf": [DATE, {"type": "string", "format": "date-time"}]}

IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": (
        "Makes a retry safe: a repeated request with the same key gets the first answer; "
        "the same key with another request is a 409."
    ),
    "schema": {"type": "string", "minLength": 1},
}

# Bodies that a route reads itself (no pydantic parameter); documented by ``document``.
BODIES_READ_BY_ROUTES: list[type[BaseModel]] = [UsageBatchIn]


def also_answers(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route that can answer more than its shape implies."""
    return {status: {"description": WHY[status]} for status in statuses}


def error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": ERROR_REF}}},
    }


def document(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document of ``app``, built once: FastAPI's, with the truth about errors."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            description=METHOD_NOT_ALLOWED,
            routes=app.routes,
        )
        components = schema.setdefault("components", {})
        models = components.setdefault("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            models.pop(name, None)
        models["Error"] = ERROR_SCHEMA
        for model in BODIES_READ_BY_ROUTES:
            body = model.model_json_schema(ref_template="#/components/schemas/{model}")
            models.update(body.pop("$defs", {}))
            models[model.__name__] = body
        components.setdefault("responses", {})["MethodNotAllowed"] = error_response(
            "Method not allowed. " + METHOD_NOT_ALLOWED
        )
        for path in schema.get("paths", {}).values():
            for method, operation in path.items():
                describe(method, operation, models)
        app.openapi_schema = schema
    return app.openapi_schema


def describe(method: str, operation: dict[str, Any], models: dict[str, Any]) -> None:
    """Document every error status of one operation with the error schema."""
    responses = operation.setdefault("responses", {})
    if "201" in responses:  # a creating POST (routes.common.create_once) takes Idempotency-Key
        operation.setdefault("parameters", []).append(IDEMPOTENCY_KEY)
    responses.pop("422", None)  # FastAPI's validation errors; answered here as 400
    for status in sorted(statuses(method, operation, models)):
        responses.setdefault(str(status), {})
    for status, response in responses.items():
        if status.isdigit() and int(status) >= 400:
            response.setdefault("description", WHY.get(int(status), "Error"))
            response["content"] = error_response("")["content"]
            if int(status) in (429, 503):
                response["headers"] = {"Retry-After": RETRY_AFTER}


def statuses(method: str, operation: dict[str, Any], models: dict[str, Any]) -> set[int]:
    """The error statuses an operation answers by what it is made of."""
    found: set[int] = set()
    parameters = operation.get("parameters", [])
    body = operation.get("requestBody")
    if operation.get("security"):  # it authenticates (interfaces.http.deps.authenticate)
        found |= {401, 403, 429, 503}
        if method not in ("get", "head"):
            found.add(409)
    # Any operation: a NUL in any query parameter, even one it does not take, is refused
    # (interfaces.http.jsontext.storable_parameters, an app-wide dependency).
    found.add(400)
    if body:
        found.add(413)
    named = [p["name"] for p in parameters if p["in"] == "path"]
    named += list(body_properties(body, models))
    if any(name.endswith("_id") for name in named):
        found.add(404)
    return found


def body_properties(body: dict[str, Any] | None, models: dict[str, Any]) -> Iterator[str]:
    """The top-level field names of a JSON request body."""
    if not body:
        return
    schema = body.get("content", {}).get("application/json", {}).get("schema", {})
    ref = schema.get("$ref", "")
    if ref.startswith("#/components/schemas/"):
        schema = models.get(ref.rsplit("/", 1)[1], {})
    yield from schema.get("properties", {})
