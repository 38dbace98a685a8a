"""One log line and the metrics of each HTTP request, management API and gateway alike.

The outermost raw-ASGI layer: it reads the request id (``X-Request-Id``, if sane) or makes
one, returns it on the answer (the gateway's answers keep their own), and when the answer is
done, counts it and logs it: method, route template, status, latency, tenant and key. Never a
header's value (a token), nor any part of a body (a prompt, a completion).

What it needs from further in (the route template, who called) it finds in a ``RequestNote``
the scope carries: FastAPI's router sets ``scope["route"]``, the authentication and the
gateway fill in the caller.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any
from uuid import UUID

from interfaces import metrics

log = logging.getLogger("hostplane.access")

NOTE = "hostplane.note"
REQUEST_ID = re.compile(rb"[\x21-\x7e]{1,128}")  # printable ASCII, no spaces, bounded
UNMATCHED = "unmatched"  # a path no route serves: never the raw path (unbounded labels)
METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))


class RequestNote:
    """What the layers inside tell the log line about one request."""

    __slots__ = ("gateway", "key_id", "request_id", "route", "tenant_id")

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.route: str | None = None  # the gateway's path, which has no FastAPI route
        self.gateway = False
        self.tenant_id: UUID | None = None
        self.key_id: UUID | None = None

    def caller(self, tenant_id: UUID | None, key_id: UUID | None) -> None:
        self.tenant_id, self.key_id = tenant_id, key_id


def note_of(scope: dict[str, Any]) -> RequestNote | None:
    return scope.get(NOTE)


def request_id(scope: dict[str, Any]) -> str:
    """The client's ``X-Request-Id`` when it is printable ASCII of at most 128 characters,
    else a new one."""
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            if REQUEST_ID.fullmatch(value):
                return value.decode("ascii")
            break
    return uuid.uuid4().hex


class Observe:
    """``templates``: the full route template of each route (by ``id``) where it differs from
    the route's own ``path_format`` (FastAPI leaves out the prefix the router was included at)."""

    def __init__(self, app: Any, templates: dict[int, str] | None = None) -> None:
        self.app = app
        self.templates = templates or {}
        # The labelled series of each (method, route, status): ``labels()`` costs ~2 µs, a
        # dict lookup ~50 ns. Bounded: routes, methods and statuses are.
        self.series: dict[tuple[str, str, int, bool], tuple[Any, Any, Any]] = {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        note = RequestNote(request_id(scope))
        scope[NOTE] = note
        status = 500  # an app that raised before answering: the server answers 500
        answer_id: str | None = None

        async def observed_send(message: Any) -> None:
            nonlocal status, answer_id
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = message.get("headers") or []
                for name, value in headers:
                    if name.lower() == b"x-request-id":  # the gateway's own id for its answer
                        answer_id = value.decode("latin-1")
                        break
                else:
                    message = dict(message)
                    message["headers"] = [*headers, (b"x-request-id", note.request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            self.done(scope, note, status, answer_id, time.perf_counter() - started)

    def done(
        self, scope: Any, note: RequestNote, status: int, answer_id: str | None, elapsed: float
    ) -> None:
        method = scope["method"]
        if method not in METHODS:
            method = "other"
        route = note.route
        if route is None:
            matched = scope.get("route")
            route = self.templates.get(id(matched)) or getattr(matched, "path_format", UNMATCHED)
        key = (method, route, status, note.gateway)
        series = self.series.get(key)
        if series is None:
            code = str(status)
            series = self.series[key] = (
                metrics.HTTP_REQUESTS.labels(method, route, code),
                metrics.HTTP_LATENCY.labels(method, route),
                metrics.GATEWAY_REQUESTS.labels(route, code) if note.gateway else None,
            )
        requests, latency, gateway = series
        requests.inc()
        latency.observe(elapsed)
        if gateway is not None:
            gateway.inc()
        if not log.isEnabledFor(logging.INFO):
            return
        fields = {
            "request_id": note.request_id,
            "method": method,
            "route": route,
            "status": status,
            "latency_ms": round(elapsed * 1000, 1),
            "tenant_id": None if note.tenant_id is None else str(note.tenant_id),
            "key_id": None if note.key_id is None else str(note.key_id),
        }
        if answer_id is not None and answer_id != note.request_id:
            fields["answer_id"] = answer_id
        log.info(
            "%s %s %d %.1fms request_id=%s tenant=%s key=%s%s",
            method,
            route,
            status,
            fields["latency_ms"],
            note.request_id,
            fields["tenant_id"] or "-",
            fields["key_id"] or "-",
            f" answer_id={answer_id}" if "answer_id" in fields else "",
            extra={"fields": fields},
        )
