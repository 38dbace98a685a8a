"""The gateway's request path: authenticate, route, forward (streamed or not), meter.

A raw ASGI handler, in front of FastAPI for the inference paths only: FastAPI's per-request
machinery measured as costly as the forwarding itself (README "Performance"). Prompts and
completions pass through memory only: nothing of a body is logged or stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import aiohttp
import orjson
from psycopg_pool import AsyncConnectionPool

from application.auth import Principal
from application.authentication import Authenticator
from application.errors import AuthenticationError
from application.gateway import (
    CatalogModel,
    GatewayCaller,
    GatewayRefusal,
    GatewaySecrets,
    OnDemand,
    Target,
    check_model,
    cold_start,
    default_model,
    estimate_tokens,
    forbidden,
    may_use,
    route,
    token_hash,
    unavailable,
)
from application.project_configs import apply_project_config
from domain.apikey import KeyIpNotAllowedError, KeyUnusableError
from domain.instance import INSTANCE_KEY_PREFIX, UPSTREAMS
from domain.usage import UsageInput
from domain.values import MAX_LATENCY_MS, MAX_TOKENS
from interfaces.db.pools import (
    DATABASE_ERRORS,
    DATABASE_RETRY_AFTER,
    DATABASE_UNAVAILABLE_MESSAGE,
)
from interfaces.db.stores import RateLimiter
from interfaces.gateway.admission import CLIENT_GONE, Actual, Admission, Admitted, Admitting
from interfaces.gateway.cache import ResponseCache, cache_key, with_id
from interfaces.gateway.directory import GatewayDirectory
from interfaces.gateway.meter import Meter, MeteringError
from interfaces.gateway.versions import StreamVersions
from interfaces.http.observe import note_of
from interfaces.metrics import (
    GATEWAY_REFUSALS,
    GATEWAY_TTFT,
    TOKENS_IN,
    TOKENS_OUT,
    UPSTREAM_LATENCY,
)
from interfaces.settings import MAX_ANSWER_BYTES, Settings

log = logging.getLogger("hostplane.gateway")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

JSON_HEADERS = [(b"content-type", b"application/json")]
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
INSTANCE_KEY_PREFIX_LEN = 16  # as Instances.deploy_instance stores it
MAX_KEPT_INSTANCE_KEYS = 10_000
RETRIES = 1  # another target, only while nothing reached the client
MAX_SSE_LINE = 1 << 20  # an upstream's line longer than this (no newline) breaks its stream


class Upstream(Exception):  # noqa: N818 - a failed call, retried or answered
    def __init__(self, refusal: GatewayRefusal) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


def upstream_error(message: str = "the upstream failed to answer") -> Upstream:
    return Upstream(GatewayRefusal(502, "upstream_error", message, "upstream_error"))


def upstream_timeout() -> Upstream:
    return Upstream(
        GatewayRefusal(504, "upstream_timeout", "the upstream did not answer in time", "timeout")
    )


def database_unavailable() -> GatewayRefusal:
    """The management API's answer to the same outage (interfaces/http/errors.py)."""
    return unavailable(
        "database_unavailable",
        DATABASE_UNAVAILABLE_MESSAGE,
        retry_after=DATABASE_RETRY_AFTER,
    )


def error_body(refusal: GatewayRefusal) -> bytes:
    return orjson.dumps(
        {
            "error": {
                "message": refusal.message,
                "type": refusal.type,
                "code": refusal.code,
                "param": refusal.param,
            }
        }
    )


async def send_json(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                *JSON_HEADERS,
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


REFUSED = (429, 503)  # the statuses counted as refusals, by their code (a fixed set)


async def send_refusal(send: Send, refusal: GatewayRefusal, request_id: str | None = None) -> None:
    if refusal.status in REFUSED:
        GATEWAY_REFUSALS.labels(refusal.code).inc()
    headers = list(refusal.headers)
    if refusal.retry_after is not None:
        headers.append((b"retry-after", str(refusal.retry_after).encode()))
    if request_id is not None:
        headers.append((b"x-request-id", request_id.encode()))
    await send_json(send, refusal.status, error_body(refusal), headers)


async def forward_once(
    session: aiohttp.ClientSession,
    url: str,
    key: str,
    payload: bytes,
    max_bytes: int = MAX_ANSWER_BYTES,
) -> tuple[int, bytes]:
    """POST a JSON body with ``key`` as bearer; (status, body) of an answer below 500.

    Upstream 5xx, connection errors and an answer over ``max_bytes`` (decompressed) raise
    ``upstream_error``, timeouts ``upstream_timeout``.
    """
    try:
        async with session.post(
            url,
            data=payload,
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        ) as response:
            raw = await read_bounded(response, max_bytes)
            status = response.status
    except TimeoutError:
        raise upstream_timeout() from None
    except aiohttp.ClientError:
        raise upstream_error() from None
    if status >= 500:
        raise upstream_error(f"the upstream answered HTTP {status}")
    return status, raw


async def read_bounded(response: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    """An answer's whole body, read into memory only up to ``max_bytes``: past that (said by
    its Content-Length, or found reading it) it is ``upstream_error``, read no further."""
    if response.content_length is not None and response.content_length > max_bytes:
        raise too_large(max_bytes)
    body = bytearray()
    while chunk := await response.content.read(max_bytes + 1 - len(body)):
        body += chunk
        if len(body) > max_bytes:
            raise too_large(max_bytes)
    return bytes(body)


def too_large(max_bytes: int) -> Upstream:
    return upstream_error(f"the upstream's answer is larger than {max_bytes} bytes")


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope["headers"]:
        if k == name:
            return v.decode("latin-1")
    return None


def bearer(scope: Scope) -> str | None:
    header = _header(scope, b"authorization") or ""
    scheme, _, token = header.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _key_id(scope: Scope) -> UUID | None:
    """The BYOK key the ``X-Key-Id`` header picks, if any."""
    header = _header(scope, b"x-key-id")
    if header is None:
        return None
    try:
        return UUID(header.strip())
    except ValueError:
        raise forbidden("forbidden", "X-Key-Id must name one of your BYOK keys") from None


def is_inference_token(scope: Scope) -> bool:
    token = bearer(scope) or ""
    return token.startswith(("hp_rk_", INSTANCE_KEY_PREFIX))


def _int(value: object) -> int:
    return min(value, MAX_TOKENS) if type(value) is int and value >= 0 else 0


def _characters(value: object) -> int:
    """Characters of the text in a prompt (messages, input), for an estimate of its tokens."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(_characters(v) for v in value)
    if isinstance(value, dict):
        return sum(_characters(v) for k, v in value.items() if k in ("content", "text", "input"))
    return 0


@dataclass
class Exchange:
    """One inference request, from its authentication to its usage record."""

    caller: GatewayCaller
    request_id: str
    kind: str  # "chat/completions" or "embeddings"
    started: float  # time.perf_counter() when the request arrived
    model: str | None = None  # the catalog slug, once the body named a known model
    admitted: Admitted | None = None  # the admission grants, settled with the usage record
    streamed: bool = False
    first_token_at: float | None = None  # time.perf_counter() of the first streamed content
    estimated: bool = False  # the tokens were counted here: the upstream gave no usage
    cache_key: bytes | None = None  # set when the model's response cache is on and may answer
    cache_ttl: int = 0  # the model's cache TTL (seconds), with ``cache_key``


def answer_headers(exchange: Exchange) -> list[tuple[bytes, bytes]]:
    """An answer's headers beyond its content type: its id, and the admission's (limits)."""
    headers = [(b"x-request-id", exchange.request_id.encode())]
    if exchange.admitted is not None:
        headers += exchange.admitted.headers
    return headers


class Gateway:
    """One per process; ``start`` and ``stop`` run with the app's lifespan."""

    def __init__(
        self,
        settings: Settings,
        auth: Authenticator,
        rate_limiter: RateLimiter,
        secrets: GatewaySecrets,
        meter: Meter,
        pool: Callable[[], AsyncConnectionPool[Any]],
        expected_deploy_seconds: float,
        admission: Admission | None = None,
        on_demand: OnDemand | None = None,
        cache: ResponseCache | None = None,
        versions: StreamVersions | None = None,
    ) -> None:
        self.settings = settings
        self.versions = versions  # keys' and users' versions from the event stream
        self.auth = auth
        self.rate_limiter = rate_limiter
        self.secrets = secrets
        self.meter = meter
        self.pool = pool
        self.directory = GatewayDirectory(pool)
        self.expected_deploy_seconds = expected_deploy_seconds
        self.admission = admission or Admission()
        self.on_demand = on_demand  # boots a model nothing serves, for tenants who want that
        self.cache = (
            cache
            if cache is not None
            else ResponseCache(settings.cache_max_entries, settings.cache_max_bytes)
        )
        self.session: aiohttp.ClientSession | None = None
        self.in_flight: dict[UUID, int] = {}
        self.active = 0
        self._instance_keys: dict[bytes, tuple[UUID, UUID]] = {}
        self.timeout = aiohttp.ClientTimeout(
            total=settings.gateway_total_timeout,
            sock_connect=settings.gateway_connect_timeout,
            sock_read=settings.gateway_first_byte_timeout,
        )

    async def start(self) -> None:
        self.meter.start()
        if self.versions is not None:
            self.versions.start()
        await self.admission.start()
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=30),
            timeout=self.timeout,
            auto_decompress=True,
            skip_auto_headers=("User-Agent",),
            # Every tenant's requests share this session: a cookie an upstream set in answer to
            # one (a load balancer's, a bot filter's) must go with no later one, of any tenant.
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def stop(self, drain_seconds: float = 10.0) -> None:
        """Wait (bounded) for requests still running, write every record, close."""
        deadline = time.monotonic() + drain_seconds
        while self.active and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await self.admission.stop()
        await self.meter.drain()
        await asyncio.to_thread(self.meter.stop)
        if self.versions is not None:
            await asyncio.to_thread(self.versions.stop)
        if self.session is not None:
            await self.session.close()
            self.session = None

    # -- who calls ------------------------------------------------------------------------

    async def authenticate(self, scope: Scope) -> GatewayCaller:
        token = bearer(scope)
        if token is None:
            raise GatewayRefusal(
                401,
                "invalid_api_key",
                "missing bearer token: send 'Authorization: Bearer <key>'",
                "authentication_error",
            )
        client = scope.get("client")
        ip = client[0] if client else None
        try:
            if token.startswith(INSTANCE_KEY_PREFIX):
                caller = await self._instance_caller(token)
            else:
                caller = await self._key_caller(token, ip)
        except (AuthenticationError, KeyUnusableError) as e:
            raise GatewayRefusal(401, "invalid_api_key", str(e), "authentication_error") from None
        except KeyIpNotAllowedError as e:
            raise forbidden("ip_not_allowed", str(e)) from None
        note = note_of(scope)
        if note is not None:  # the request's log line names its tenant and key
            note.caller(caller.tenant_id, caller.key_id)
        return caller

    async def _key_caller(self, token: str, ip: str | None) -> GatewayCaller:
        auth = self.auth
        cheap = auth.knows_without_loading(token)
        key_id = auth.key_id_of(token) if cheap else await asyncio.to_thread(auth.key_id_of, token)
        if key_id is None:
            raise forbidden("wrong_key_kind", "the admin token can't call models: use a router key")
        # Its request limit is its own ``rpm_limit`` (the limits gate), not the management API's.
        principal = await self._principal(token, key_id, ip, cheap)
        if principal.kind != "router" and principal.user_id is None:  # a user may call models
            raise forbidden(
                "wrong_key_kind", "a management key can't call models: use a router key"
            )
        assert principal.tenant_id is not None
        if principal.user_id is not None:  # a user's JWT: its tenant's caller, every model
            return GatewayCaller(tenant_id=principal.tenant_id, key_id=principal.user_id)
        key = auth.kept_key(key_id)
        assert key is not None
        return GatewayCaller(
            tenant_id=principal.tenant_id,
            key_id=key_id,
            allowed_models=None if key.allowed_models is None else tuple(key.allowed_models),
            sovereignty=key.sovereignty_mode,
        )

    async def _principal(self, token: str, key_id: UUID, ip: str | None, cheap: bool) -> Principal:
        """The key's (or user's) principal: as kept here while the event stream shows no later
        version of it (``versions``: no round trip); else loaded afresh. Until the stream is
        followed, its stored version is read for the request."""
        auth, versions = self.auth, self.versions
        if versions is None or not versions.following():
            version = await self.rate_limiter.version(self.pool(), key_id)
            principal = auth.authenticate_cached(token, key_id, ip, version) if cheap else None
            if principal is None:
                principal = await asyncio.to_thread(auth.authenticate, token, ip, None, version)
            return principal
        kept = auth.kept_version(key_id)
        if cheap and kept is not None and versions.is_current(key_id, kept):
            principal = auth.authenticate_cached(token, key_id, ip, kept)
            if principal is not None:
                return principal
        position = versions.position  # before the load: any later change will be seen
        try:
            return await asyncio.to_thread(auth.authenticate, token, ip, None, None)
        finally:  # refused or not, the key as loaded is what the next request is checked with
            kept = auth.kept_version(key_id)
            if kept is not None:
                versions.loaded(key_id, kept, position)

    async def _instance_caller(self, token: str) -> GatewayCaller:
        digest = token_hash(token)
        kept = self._instance_keys.get(digest)
        if kept is None:
            for instance_id, tenant_id in await self.directory.instances_with_prefix(
                token[:INSTANCE_KEY_PREFIX_LEN]
            ):
                if await asyncio.to_thread(self.secrets.instance_key_matches, instance_id, token):
                    kept = (instance_id, tenant_id)
                    if len(self._instance_keys) >= MAX_KEPT_INSTANCE_KEYS:
                        self._instance_keys.clear()
                    self._instance_keys[digest] = kept
                    break
            else:
                raise AuthenticationError("invalid API key")
        instance_id, tenant_id = kept
        live = await self.directory.targets(tenant_id)
        if not any(t.instance_id == instance_id for t in live):
            live = await self.directory.targets(tenant_id, fresh=True)
            if not any(t.instance_id == instance_id for t in live):
                self._instance_keys.pop(digest, None)
                raise AuthenticationError("this instance has been destroyed")
        return GatewayCaller(tenant_id=tenant_id, key_id=instance_id, instance_id=instance_id)

    def queued(self) -> int:
        """Requests of this process waiting for an upstream place."""
        queue = getattr(self.admission.slots, "queue", None)
        return getattr(queue, "length", 0)

    # -- routes ---------------------------------------------------------------------------

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.active += 1
        note = note_of(scope)
        if note is not None:  # one of the gateway's fixed paths (GatewayRoutes)
            note.gateway, note.route = True, scope["path"]
        try:
            path = scope["path"].removeprefix("/api")
            if path == "/v1/models":
                await self._models(scope, send)
            else:
                await self._inference(scope, receive, send, path.removeprefix("/v1/"))
        except DATABASE_ERRORS as exc:  # down or restarting: as the management API answers
            log.warning("database unavailable on %s: %s", scope["path"], type(exc).__name__)
            with contextlib.suppress(Exception):  # unless the response had already started
                await send_refusal(send, database_unavailable())
        except Exception as exc:  # noqa: BLE001 - an answer, never a dropped connection
            log.exception("gateway request failed: %s", type(exc).__name__)
            refusal = GatewayRefusal(500, "internal_error", "internal error", "api_error")
            with contextlib.suppress(Exception):  # unless the response had already started
                await send_refusal(send, refusal)
        finally:
            self.active -= 1

    async def _models(self, scope: Scope, send: Send) -> None:
        try:
            caller = await self.authenticate(scope)
        except GatewayRefusal as refusal:
            return await send_refusal(send, refusal)
        models = await self.directory.models()
        if caller.allowed_models is not None and not set(caller.allowed_models) <= models.keys():
            models = await self.directory.models(fresh=True)  # a model registered a moment ago
        if caller.instance_id is not None:
            own = next(
                (
                    t
                    for t in await self.directory.targets(caller.tenant_id)
                    if t.instance_id == caller.instance_id
                ),
                None,
            )
            usable = [models[own.model_id]] if own and own.model_id in models else []
        else:
            usable = [m for m in models.values() if may_use(caller, m)]
        data = [
            {
                "id": m.slug,
                "object": "model",
                "created": m.created,
                "owned_by": m.vendor or "hostplane",
            }
            for m in sorted(usable, key=lambda m: m.slug)
        ]
        await send_json(send, 200, orjson.dumps({"object": "list", "data": data}))

    async def _inference(self, scope: Scope, receive: Receive, send: Send, kind: str) -> None:
        started = time.perf_counter()
        try:
            raw = await self._read_body(receive)
            caller = await self.authenticate(scope)
        except GatewayRefusal as refusal:
            return await send_refusal(send, refusal)
        request_id = ("chatcmpl-" if kind == "chat/completions" else "embd-") + uuid.uuid4().hex
        exchange = Exchange(caller, request_id, kind, started)
        try:
            try:
                body = self._parse(raw)
                if kind == "chat/completions":  # the project's settings (seed 002)
                    config = await self.directory.project_config(caller.tenant_id)
                    body = apply_project_config(*config, body)
                if "model" not in body:  # seed 003: the body's vendor, or X-Key-Id, picks one
                    body["model"] = await self._implied_model(scope, caller, body)
                known = await self.directory.model(body.get("model"))
                # A known model is billed even when refused (0 tokens, a failure): every
                # request after authentication is one usage record.
                exchange.model = known.slug if known is not None else None
                model = check_model(caller, body.get("model"), known, kind)
                targets = await self._targets(scope, caller, model, body)
                exchange.admitted = await self.admission.admit(
                    self._admitting(exchange, model, body)
                )
            except GatewayRefusal as refusal:
                if exchange.model is not None:  # a known model: the refusal is counted
                    await self._bill_quietly(exchange, "error", 0, 0, 0, None)
                return await send_refusal(send, refusal, request_id)
            if await self._from_cache(send, exchange, model, body):
                return  # a cache hit passed the gates but takes no upstream place
            async with contextlib.AsyncExitStack() as place:
                try:  # a place among max_in_flight: may wait, or be refused (queue)
                    await place.enter_async_context(self.admission.slot(caller, receive))
                except GatewayRefusal as refusal:
                    gone = refusal.status == CLIENT_GONE
                    await self._bill_quietly(
                        exchange, "cancelled" if gone else "error", 0, 0, 0, None
                    )
                    return await send_refusal(send, refusal, request_id)
                if kind == "chat/completions" and body.get("stream") is True:
                    exchange.streamed = True
                    await self._stream(scope, receive, send, exchange, body, targets)
                else:
                    await self._once(send, exchange, body, targets)
        finally:
            if exchange.admitted is not None:  # settled by its usage record, else released
                await exchange.admitted.settle(None)

    @staticmethod
    def _admitting(exchange: Exchange, model: CatalogModel, body: dict[str, Any]) -> Admitting:
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        text = body.get("messages" if exchange.kind == "chat/completions" else "input")
        return Admitting(
            caller=exchange.caller,
            model=model,
            kind=exchange.kind,
            prompt_tokens=estimate_tokens(_characters(text)),
            max_tokens=limit if isinstance(limit, int) and not isinstance(limit, bool) else None,
            body=body,
        )

    async def _read_body(self, receive: Receive) -> bytes:
        chunks = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise GatewayRefusal(400, "invalid_request", "the client went away")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.settings.max_body_bytes:
                raise GatewayRefusal(413, "request_too_large", "the request body is too large")
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)

    @staticmethod
    def _parse(raw: bytes) -> dict[str, Any]:
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            raise GatewayRefusal(400, "invalid_json", "the body must be a JSON object")
        return body

    async def _implied_model(
        self, scope: Scope, caller: GatewayCaller, body: dict[str, Any]
    ) -> str | None:
        """The model of a request that names none: its vendor's default, the vendor being the
        body's ``vendor`` or that of the BYOK key ``X-Key-Id`` names."""
        vendor = body.get("vendor")
        key_id = _key_id(scope)
        if vendor is None and key_id is not None:
            targets = await self.directory.targets(caller.tenant_id, fresh=True)
            vendor = next((t.vendor for t in targets if t.instance_id == key_id), None)
        return default_model(vendor)

    async def _targets(
        self, scope: Scope, caller: GatewayCaller, model: Any, body: dict[str, Any]
    ) -> list[Target]:
        vendor = body.pop("vendor", None)
        if vendor is not None and vendor not in UPSTREAMS:
            raise GatewayRefusal(
                400,
                "invalid_value",
                f"vendor must be one of {', '.join(UPSTREAMS)}",
                param="vendor",
            )
        key_id = _key_id(scope)
        fresh = False
        while True:
            instances = await self.directory.targets(caller.tenant_id, fresh=fresh)
            if key_id is not None and not any(t.instance_id == key_id for t in instances):
                if fresh:
                    raise forbidden("forbidden", "X-Key-Id names no BYOK key of yours")
                fresh = True
                continue
            try:
                return route(
                    caller,
                    model,
                    instances,
                    self.in_flight,
                    datetime.now(UTC),
                    self.expected_deploy_seconds,
                    vendor=vendor,
                    key_id=key_id,
                )
            except GatewayRefusal as refusal:
                if refusal.status != 503:
                    raise
                if fresh:
                    if vendor is None and key_id is None:  # not pinned to a BYOK upstream
                        raise await self._boot(scope, caller, model, refusal) from None
                    raise
                fresh = True  # a just-started instance may not be in what was kept

    async def _boot(
        self, scope: Scope, caller: GatewayCaller, model: CatalogModel, refusal: GatewayRefusal
    ) -> GatewayRefusal:
        """The answer to a request nothing serves: ``cold_start`` once on-demand boot has
        started (or had started) the model's deploy for the tenant, else ``refusal``."""
        if (
            self.on_demand is None
            or refusal.code != "model_unavailable"
            or not self.on_demand.applies(caller, model)
        ):
            return refusal
        client = scope.get("client")
        try:
            booting = await asyncio.to_thread(
                self.on_demand.boot, caller, model, client[0] if client else None
            )
        except Exception as exc:  # noqa: BLE001 - the request is answered as unavailable
            log.warning("on-demand boot of %s failed: %s", model.slug, exc)
            return refusal
        if booting is None:  # the tenant has on-demand boot off
            return refusal
        return cold_start(
            model.slug, booting.requested_at, datetime.now(UTC), self.expected_deploy_seconds
        )

    async def _call(self, target: Target, kind: str) -> tuple[str, str]:
        """The URL and bearer of a target; a BYOK key is opened here, for this call only."""
        if target.is_byok:
            assert target.vendor is not None
            base = self.settings.upstream_url(target.vendor)
            opener = self.secrets.upstream_key
        else:
            base = (target.endpoint_url or "").rstrip("/")
            opener = self.secrets.instance_key
        if self.secrets.is_loaded(target.instance_id):
            key = opener(target.instance_id)
        else:
            key = await asyncio.to_thread(opener, target.instance_id)
        if key is None:
            raise upstream_error("the target's key is gone")
        return f"{base}/{kind}", key

    # -- metering -------------------------------------------------------------------------

    async def _bill(
        self,
        exchange: Exchange,
        status: str,
        prompt: int,
        completion: int,
        cached: int,
        target: Target | None,
        cache_hit: bool = False,
    ) -> None:
        """Make the request's usage record durable, then settle its admission with it."""
        assert exchange.model is not None
        latency = min(MAX_LATENCY_MS, round((time.perf_counter() - exchange.started) * 1000))
        prompt = _int(prompt)
        completion = _int(completion)
        cached = min(_int(cached), prompt)
        position = None
        try:
            position = await self.meter.record(
                UsageInput(
                    request_id=exchange.request_id,
                    key_id=exchange.caller.key_id,
                    model=exchange.model,
                    prompt_tokens=prompt,
                    completion_tokens=completion,
                    status=status,
                    latency_ms=latency,
                    occurred_at=datetime.now(UTC),
                    instance_id=None if target is None else target.instance_id,
                    cached_tokens=cached,
                    vendor=None if target is None else target.vendor,
                    ttft_ms=None
                    if exchange.first_token_at is None
                    else min(latency, round((exchange.first_token_at - exchange.started) * 1000)),
                    streamed=exchange.streamed,
                    estimated=exchange.estimated,
                    cache_hit=cache_hit,
                )
            )
            TOKENS_IN.inc(prompt)
            TOKENS_OUT.inc(completion)
            if exchange.first_token_at is not None:
                GATEWAY_TTFT.observe(exchange.first_token_at - exchange.started)
        finally:
            if exchange.admitted is not None:
                await exchange.admitted.settle(
                    Actual(
                        status, prompt, completion, cached, cache_hit=cache_hit, position=position
                    )
                )

    async def _bill_quietly(
        self,
        exchange: Exchange,
        status: str,
        prompt: int,
        completion: int,
        cached: int,
        target: Target | None,
    ) -> None:
        with contextlib.suppress(MeteringError):  # nothing was answered that must be billed
            await self._bill(exchange, status, prompt, completion, cached, target)

    # -- forwarding -----------------------------------------------------------------------

    async def _once(
        self, send: Send, exchange: Exchange, body: dict[str, Any], targets: list[Target]
    ) -> None:
        kind, request_id = exchange.kind, exchange.request_id
        payload = orjson.dumps(body)
        failure: Upstream | None = None
        last: Target | None = None
        for target in targets[: 1 + RETRIES]:
            last = target
            try:
                status, raw = await self._post(target, kind, payload)
            except Upstream as e:
                failure = e
                continue
            if status >= 400:
                await self._bill_quietly(exchange, "error", 0, 0, 0, target)
                return await send_json(
                    send, status, self._upstream_error(status, raw), answer_headers(exchange)
                )
            try:
                answer = orjson.loads(raw)
                assert isinstance(answer, dict)
            except (orjson.JSONDecodeError, AssertionError):
                failure = upstream_error("the upstream's answer is not JSON")
                continue
            usage = answer.get("usage") if isinstance(answer.get("usage"), dict) else {}
            prompt, completion, cached = self._usage_of(exchange, usage, body, answer)
            answer["id"] = request_id
            try:
                await self._bill(exchange, "success", prompt, completion, cached, target)
            except MeteringError:
                return await send_refusal(
                    send,
                    GatewayRefusal(
                        503,
                        "metering_unavailable",
                        "the answer could not be recorded; retry",
                        "service_unavailable",
                        retry_after=2,
                    ),
                    request_id,
                )
            headers = answer_headers(exchange)
            if exchange.cache_key is not None:
                self._keep(exchange, answer, (prompt, completion, cached))
                headers.append((b"x-hostplane-cache", b"miss"))
            return await send_json(send, 200, orjson.dumps(answer), headers)
        assert failure is not None
        await self._fail(send, exchange, last, failure)

    async def _from_cache(
        self, send: Send, exchange: Exchange, model: CatalogModel, body: dict[str, Any]
    ) -> bool:
        """Answer from the response cache if the model's is on and holds the answer.

        A hit is metered with the tokens of the answer it repeats, at zero token cost.
        """
        if model.cache_ttl is None or body.get("stream") is True:
            return False
        caller = exchange.caller
        exchange.cache_key = cache_key(caller.tenant_id, exchange.kind, body)
        exchange.cache_ttl = model.cache_ttl
        hit = self.cache.get(caller.tenant_id, exchange.cache_key, model.cache_ttl)
        if hit is None:
            return False
        exchange.cache_key = None  # answered: nothing to store again
        exchange.estimated = hit.estimated
        tokens = (hit.prompt_tokens, hit.completion_tokens, hit.cached_tokens)
        try:
            await self._bill(exchange, "success", *tokens, None, cache_hit=True)
        except MeteringError:
            await send_refusal(
                send,
                GatewayRefusal(
                    503,
                    "metering_unavailable",
                    "the answer could not be recorded; retry",
                    "service_unavailable",
                    retry_after=2,
                ),
                exchange.request_id,
            )
            return True
        headers = [*answer_headers(exchange), (b"x-hostplane-cache", b"hit")]
        await send_json(send, 200, with_id(hit.body, exchange.request_id), headers)
        return True

    def _keep(
        self, exchange: Exchange, answer: dict[str, Any], tokens: tuple[int, int, int]
    ) -> None:
        """Store a successful answer (billed already) for the tenant's identical requests."""
        assert exchange.cache_key is not None
        self.cache.put(
            exchange.caller.tenant_id,
            exchange.cache_key,
            exchange.cache_ttl,
            answer,
            tokens,
            exchange.estimated,
        )

    async def _fail(
        self, send: Send, exchange: Exchange, last: Target | None, failure: Upstream
    ) -> None:
        """Answer a request no target served, billed as an error.

        The targets were read from a copy kept for about a second: a GPU instance destroyed
        meanwhile fails as an upstream error. Read afresh, the request is answered as routing
        now would answer it (``model_unavailable``, ``cold_start``) instead of a 502.
        """
        refusal = failure.refusal
        caller, model = exchange.caller, exchange.model
        assert model is not None
        if last is not None and not last.is_byok:
            now_there = await self.directory.targets(caller.tenant_id, fresh=True)
            if not any(
                t.instance_id == last.instance_id and t.status == "running" for t in now_there
            ):
                catalog = await self.directory.model(model)
                if catalog is not None:
                    try:
                        route(
                            caller,
                            catalog,
                            now_there,
                            self.in_flight,
                            datetime.now(UTC),
                            self.expected_deploy_seconds,
                        )
                    except GatewayRefusal as rerouted:
                        refusal = rerouted
        await self._bill_quietly(exchange, "error", 0, 0, 0, last)
        await send_refusal(send, refusal, exchange.request_id)

    async def _post(self, target: Target, kind: str, payload: bytes) -> tuple[int, bytes]:
        assert self.session is not None
        url, key = await self._call(target, kind)
        self.in_flight[target.instance_id] = self.in_flight.get(target.instance_id, 0) + 1
        started = time.perf_counter()
        try:
            bound = self.settings.gateway_max_answer_bytes
            return await forward_once(self.session, url, key, payload, bound)
        finally:
            UPSTREAM_LATENCY[kind].observe(time.perf_counter() - started)
            self._done(target)

    def _done(self, target: Target) -> None:
        left = self.in_flight.get(target.instance_id, 1) - 1
        if left > 0:
            self.in_flight[target.instance_id] = left
        else:
            self.in_flight.pop(target.instance_id, None)

    @staticmethod
    def _upstream_error(status: int, raw: bytes) -> bytes:
        """An upstream's 4xx, in the OpenAI error shape (as it is, if it already is)."""
        try:
            answer = orjson.loads(raw)
        except orjson.JSONDecodeError:
            answer = None
        if isinstance(answer, dict) and isinstance(answer.get("error"), dict):
            error = answer["error"]
            return orjson.dumps(
                {
                    "error": {
                        "message": str(error.get("message") or f"upstream HTTP {status}"),
                        "type": error.get("type") or "invalid_request_error",
                        "code": error.get("code"),
                        "param": error.get("param"),
                    }
                }
            )
        refusal = GatewayRefusal(status, "upstream_refused", f"the upstream answered HTTP {status}")
        return error_body(refusal)

    @staticmethod
    def _usage_of(
        exchange: Exchange, usage: dict[str, Any], body: dict[str, Any], answer: dict[str, Any]
    ) -> tuple[int, int, int]:
        kind = exchange.kind
        if usage and "prompt_tokens" in usage:
            details = usage.get("prompt_tokens_details")
            cached = details.get("cached_tokens", 0) if isinstance(details, dict) else 0
            return (
                _int(usage.get("prompt_tokens")),
                _int(usage.get("completion_tokens")),
                _int(cached),
            )
        # No usage from the upstream: counted here (an estimate).
        exchange.estimated = True
        prompt = estimate_tokens(
            _characters(body.get("messages" if kind == "chat/completions" else "input"))
        )
        completion = 0
        if kind == "chat/completions":
            choices = answer.get("choices")
            completion = estimate_tokens(
                sum(_characters(c.get("message")) for c in choices if isinstance(c, dict))
                if isinstance(choices, list)
                else 0
            )
        return prompt, completion, 0

    async def _stream(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        exchange: Exchange,
        body: dict[str, Any],
        targets: list[Target],
    ) -> None:
        options = body.get("stream_options")
        wants_usage = isinstance(options, dict) and options.get("include_usage") is True
        body["stream_options"] = {
            **(options if isinstance(options, dict) else {}),
            "include_usage": True,
        }
        payload = orjson.dumps(body)
        prompt_characters = _characters(body.get("messages"))
        failure: Upstream | None = None
        last: Target | None = None
        assert self.session is not None
        for target in targets[: 1 + RETRIES]:
            last = target
            try:
                url, key = await self._call(target, "chat/completions")
            except Upstream as e:
                failure = e
                continue
            self.in_flight[target.instance_id] = self.in_flight.get(target.instance_id, 0) + 1
            started = time.perf_counter()
            try:
                response = await self.session.post(
                    url,
                    data=payload,
                    headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
                )
                UPSTREAM_LATENCY["chat/completions"].observe(time.perf_counter() - started)
            except TimeoutError:
                self._done(target)
                failure = upstream_timeout()
                continue
            except aiohttp.ClientError:
                self._done(target)
                failure = upstream_error()
                continue
            try:
                if response.status >= 500:
                    failure = upstream_error(f"the upstream answered HTTP {response.status}")
                    continue
                if response.status >= 400:
                    raw = await response.read()
                    await self._bill_quietly(exchange, "error", 0, 0, 0, target)
                    return await send_json(
                        send,
                        response.status,
                        self._upstream_error(response.status, raw),
                        answer_headers(exchange),
                    )
                # From here on bytes reach the client: no retry any more.
                return await self._relay(
                    receive, send, response, exchange, target, wants_usage, prompt_characters
                )
            except TimeoutError:
                failure = upstream_timeout()
                continue
            except aiohttp.ClientError:
                failure = upstream_error()
                continue
            finally:
                response.release()
                self._done(target)
        assert failure is not None
        await self._fail(send, exchange, last, failure)

    async def _relay(
        self,
        receive: Receive,
        send: Send,
        response: aiohttp.ClientResponse,
        exchange: Exchange,
        target: Target,
        wants_usage: bool,
        prompt_characters: int,
    ) -> None:
        request_id, model = exchange.request_id, exchange.model
        gone = asyncio.Event()

        async def watch() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    gone.set()
                    return

        watcher = asyncio.create_task(watch())
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [*SSE_HEADERS, *answer_headers(exchange)],
            }
        )
        state = _Relayed(request_id, wants_usage)
        status = "success"

        async def pass_on(lines: list[bytes]) -> None:
            if out := state.relay(lines):
                if exchange.first_token_at is None:
                    exchange.first_token_at = time.perf_counter()
                if not gone.is_set():
                    await send({"type": "http.response.body", "body": out, "more_body": True})

        try:
            # What the upstream sent in one read goes on in one piece (events it sent
            # together, as a fast upstream does), each event as soon as it has arrived.
            pending = bytearray()  # a line not ended yet
            async for data in response.content.iter_any():
                pending += data
                end = pending.rfind(b"\n")
                if end < 0:
                    if len(pending) > MAX_SSE_LINE:
                        status = "error"  # not an SSE stream: its line never ends
                        break
                    continue
                await pass_on(bytes(pending[:end]).split(b"\n"))
                del pending[: end + 1]
                if state.done:
                    break
            else:  # the upstream closed: a last line without its newline counts too
                if pending:
                    await pass_on([bytes(pending)])
        except (TimeoutError, aiohttp.ClientError):
            status = "error"
        usage, done, completion_characters = state.usage, state.done, state.characters
        if not done and status == "success":
            status = "error"  # the upstream ended without [DONE]
        if gone.is_set():
            status = "cancelled"
        if usage is not None and "prompt_tokens" in usage:
            details = usage.get("prompt_tokens_details")
            cached = details.get("cached_tokens", 0) if isinstance(details, dict) else 0
            prompt, completion = (
                _int(usage.get("prompt_tokens")),
                _int(usage.get("completion_tokens")),
            )
        else:  # no usage from the upstream: counted here (an estimate)
            exchange.estimated = True
            prompt = estimate_tokens(prompt_characters)
            completion, cached = estimate_tokens(completion_characters), 0
        try:
            await self._bill(exchange, status, prompt, completion, cached, target)
            billed = True
        except MeteringError:
            billed = False
        watcher.cancel()
        if gone.is_set():
            return
        if status == "success" and billed:
            tail = b"data: [DONE]\n\n"
            if wants_usage and usage is None:  # asked for, not given: the gateway's count
                counted = {
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "total_tokens": prompt + completion,
                }
                chunk = {
                    "id": request_id,
                    "object": "chat.completion.chunk",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [],
                    "usage": counted,
                }
                tail = b"data: " + orjson.dumps(chunk) + b"\n\n" + tail
        else:
            refusal = (
                GatewayRefusal(
                    503,
                    "metering_unavailable",
                    "the answer could not be recorded",
                    "service_unavailable",
                )
                if status == "success"
                else GatewayRefusal(
                    502, "upstream_error", "the upstream's stream broke off", "upstream_error"
                )
            )
            tail = b"data: " + error_body(refusal) + b"\n\n"
        await send({"type": "http.response.body", "body": tail, "more_body": False})


class _Relayed:
    """A stream's events as relayed: the usage the upstream reported, the characters counted
    (for an estimate when it reports none) and whether ``data: [DONE]`` came."""

    __slots__ = ("request_id", "wants_usage", "usage", "characters", "done")

    def __init__(self, request_id: str, wants_usage: bool) -> None:
        self.request_id = request_id
        self.wants_usage = wants_usage
        self.usage: dict[str, Any] | None = None
        self.characters = 0
        self.done = False

    def relay(self, lines: list[bytes]) -> bytes:
        """The events to pass on for these lines, up to ``[DONE]`` (held back: it follows the
        usage record's commit); other lines and what cannot be parsed are dropped."""
        out: list[bytes] = []
        for line in lines:
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                self.done = True
                break
            try:
                chunk = orjson.loads(data)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(chunk, dict):
                continue
            if isinstance(chunk.get("usage"), dict):
                self.usage = chunk["usage"]
                if not self.wants_usage:
                    if not chunk.get("choices"):
                        continue  # the usage chunk the client did not ask for
                    chunk["usage"] = None
            choices = chunk.get("choices")
            if isinstance(choices, list):
                for choice in choices:
                    if isinstance(choice, dict):
                        self.characters += _characters(choice.get("delta"))
            if "id" in chunk:
                chunk["id"] = self.request_id
            out.append(b"data: " + orjson.dumps(chunk) + b"\n\n")
        return b"".join(out)
