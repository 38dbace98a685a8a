"""The FastAPI application: management API under /api/v1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import Depends, FastAPI
from starlette.responses import JSONResponse

from application.gateway import GatewayCaller, GatewaySecrets, OnDemand
from interfaces import console
from interfaces.bootstrap import Container
from interfaces.gateway.admission import Admission
from interfaces.gateway.budgets import budget_gate
from interfaces.gateway.handler import Gateway
from interfaces.gateway.ledger import Allowance, Ledger
from interfaces.gateway.limits import RateLimits, TenantQuotas, lease_size
from interfaces.gateway.meter import METER_APPLICATION_NAME, Meter
from interfaces.gateway.routes import GatewayRoutes
from interfaces.gateway.scheduler import FairShareScheduler
from interfaces.gateway.versions import StreamVersions
from interfaces.http import errors, openapi
from interfaces.http.body_limit import BodyLimit
from interfaces.http.jsontext import storable_parameters
from interfaces.http.observe import Observe
from interfaces.http.routes import (
    audit,
    auth,
    billing,
    budgets,
    byok,
    capacity,
    compat_aimactok,
    compat_hostedai,
    compat_hostyourai,
    compat_manage,
    export,
    fairshare,
    gateway_load,
    health,
    instances,
    keys,
    mcp_servers,
    metrics,
    models,
    tenants,
    usage,
    usage_cache,
    users,
    webhooks,
)
from interfaces.metrics import sample
from interfaces.settings import Settings

# Every route module of the management API, in the order the OpenAPI document lists them.
ROUTES = (
    health,
    tenants,
    keys,
    instances,
    budgets,
    models,
    usage,
    usage_cache,
    billing,
    audit,
    export,
    webhooks,
    byok,
    mcp_servers,
    capacity,
    fairshare,
    gateway_load,
    users,
)
# Routes at the root, where the platforms that hostplane stands in for document them.
ROOT_ROUTES = (auth, metrics)

# The compatibility routes, each at its platform's own paths (the router carries its prefix).
COMPAT_ROUTES = (compat_hostyourai, compat_hostedai, compat_manage, compat_aimactok)


class OrjsonResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_UTC_Z)


class JsonBodyByDefault:
    """Treat request bodies as JSON even without a JSON Content-Type.

    The seeds' own curl examples send ``-d '{...}'`` without ``Content-Type``, which curl
    labels as a form; the management API only speaks JSON, so it reads such bodies as JSON.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] in ("POST", "PUT", "PATCH"):
            headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
            original = dict(scope["headers"]).get(b"content-type", b"")
            if not original.startswith(b"application/json"):
                # In place: the outer layers read what the router sets in the scope (its route).
                scope["headers"] = [*headers, (b"content-type", b"application/json")]
        await self.app(scope, receive, send)


class HostplaneApi(FastAPI):
    """FastAPI, documenting validation errors as this API answers them (400, not 422), with
    raw ASGI layers in front of it (``front``): they see every request before FastAPI does.

    Middleware added with ``add_middleware`` runs inside FastAPI's own stack (Starlette's
    dispatch, its error and body-limit layers, FastAPI's telemetry layer): ~11% of the event
    loop's time per gateway request at 500 req/s in a profile, for layers the gateway does not
    use (it bounds its body itself and answers its own errors).
    """

    front: Any = None  # an ASGI app ending in ``FastAPI.__call__``; None: FastAPI alone

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.front is None:
            await super().__call__(scope, receive, send)
        else:
            await self.front(scope, receive, send)

    async def fastapi(self, scope: Any, receive: Any, send: Any) -> None:
        """FastAPI's own handling (its middleware stack, then its routes)."""
        await super().__call__(scope, receive, send)

    def openapi(self) -> dict[str, Any]:
        return openapi.document(self)


def create_gateway(container: Container, app: FastAPI) -> Gateway:
    settings = container.settings
    auth = container.auth

    def pool() -> Any:
        return app.state.async_pool

    def rpm_limit(caller: GatewayCaller) -> int | None:
        key = None if caller.instance_id is not None else auth.kept_key(caller.key_id)
        return None if key is None else key.rpm_limit

    limits = RateLimits(
        Allowance(Ledger(pool), lease_size),
        rpm_limit,
        TenantQuotas(pool),
        settings.limit_window_seconds,
    )
    return Gateway(
        settings=settings,
        auth=container.auth,
        rate_limiter=container.rate_limiter,
        secrets=GatewaySecrets(container.store, container.secret_box),
        meter=Meter(
            container.usage,
            recorder=container.recorder,
            writer=container.usage_writer(METER_APPLICATION_NAME),
        ),
        pool=pool,
        expected_deploy_seconds=settings.simulated_deploy_seconds,
        admission=Admission(
            gates=[limits, budget_gate(container.pool, settings.gateway_total_timeout)],
            slots=FairShareScheduler.of(settings, lambda: app.state.async_pool),
        ),
        on_demand=OnDemand(
            container.instances,
            settings.on_demand_region,
            settings.on_demand_provider,
            settings.on_demand_instance_type,
        ),
        versions=StreamVersions(
            container.database.conninfo,
            container.runner.source.table,
            container.recorder.changes_channel,
            container.store.on_commit,
        ),
    )


def management_api(settings: Settings, lifespan: Any = None) -> HostplaneApi:
    """The management API's routes, errors and middleware (no container needed: the OpenAPI
    document can be built from it alone)."""
    app = HostplaneApi(
        lifespan=lifespan,
        title="hostplane",
        version="0.1.0",
        summary="Event-sourced control plane for multi-tenant AI-inference hosting.",
        openapi_url="/api/v1/openapi.json",
        docs_url="/docs",
        redoc_url=None,
        default_response_class=OrjsonResponse,
        # No OpenTelemetry provider is configured; skip its per-request checks (~5% of CPU).
        telemetry={"tracing": False, "metrics": False},
        dependencies=[Depends(storable_parameters)],
    )
    errors.install(app)
    for module in ROUTES:
        app.include_router(module.router, prefix="/api/v1")
    for module in (*ROOT_ROUTES, *COMPAT_ROUTES):
        app.include_router(module.router)
    # The web console's pages and their static files (interfaces/console).
    app.include_router(console.router)
    app.mount("/console/static", console.static, name="console-static")
    app.add_middleware(JsonBodyByDefault)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(errors.UnexpectedErrorsAs500)
    return app


def route_templates() -> dict[int, str]:
    """The full template of each /api/v1 route (by ``id``), for the log and the metrics."""
    return {
        id(route): "/api/v1" + route.path_format
        for module in ROUTES
        for route in module.router.routes
        if hasattr(route, "path_format")
    }


def create_app(container: Container) -> FastAPI:
    """The served app: the management API, and the gateway in front of it."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Authentication and the hottest reads query from the event loop, without a thread.
        async with container.async_pool() as pool:
            app.state.async_pool = pool
            await gateway.start()
            sampling = asyncio.get_running_loop().create_task(
                sample(
                    lambda: gateway.active,
                    gateway.queued,
                    lambda: {
                        "requests": container.pool,
                        "event_loop": pool,
                        "event_store": container.store.recorder.datastore.pool,
                    },
                )
            )
            try:
                yield
            finally:
                sampling.cancel()
                # The server has drained its requests (SIGTERM): every record is written.
                await gateway.stop()

    app = management_api(container.settings, lifespan)
    app.state.container = container
    gateway = create_gateway(container, app)
    app.state.gateway = gateway
    # Outermost: every request's log line and metrics, the gateway's too; then the inference
    # paths, before any of the management API's machinery.
    app.front = Observe(GatewayRoutes(app.fastapi, gateway=gateway), templates=route_templates())
    return app
