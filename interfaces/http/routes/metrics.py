"""``GET /metrics``: Prometheus's text format, for the operator's scraper (interfaces/metrics.py)."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from application.errors import ForbiddenError
from interfaces import metrics
from interfaces.http.deps import authenticate, bearer_token

router = APIRouter(tags=["metrics"])


@router.get("/metrics", include_in_schema=False)
async def scrape(request: Request) -> Response:
    """Every process's metrics, summed; the admin token or ``HOSTPLANE_METRICS_TOKEN``."""
    container = request.app.state.container
    token = bearer_token(request)  # 401 without one
    expected = container.settings.metrics_token
    if expected is None or not hmac.compare_digest(token.encode(), expected.encode()):
        principal = await authenticate(request)
        if principal.kind != "admin":
            raise ForbiddenError("metrics need the admin token or HOSTPLANE_METRICS_TOKEN")
    body = await run_in_threadpool(
        metrics.scrape, [metrics.ReadModelPositions(container.runner.status)]
    )
    return Response(body, media_type=metrics.CONTENT_TYPE)
