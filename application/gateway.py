"""The inference gateway's decisions: who may call which model, and which target serves it.

Pure functions over data the interfaces layer reads (keys, the catalog, a tenant's instances),
plus ``GatewaySecrets``, which opens the keys a target is called with. Nothing here does I/O on
the request path except ``GatewaySecrets``' first load of an aggregate.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from application.instances import Booting, Instances
from application.ports import SecretBox
from application.store import EventStore
from domain.base import Actor
from domain.instance import Instance
from domain.tenant import Tenant

SOVEREIGN_REGION = "EU"
COLD_STATUSES = ("pending", "deploying")


class GatewayRefusal(Exception):  # noqa: N818 - an answer, not a failure
    """A request the gateway answers itself, with an OpenAI-shaped error."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        type_: str = "invalid_request_error",
        param: str | None = None,
        retry_after: int | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.type = type_
        self.param = param
        self.retry_after = retry_after
        self.headers = headers or []  # more response headers (the x-ratelimit-* of a 429)


def forbidden(code: str, message: str) -> GatewayRefusal:
    return GatewayRefusal(403, code, message, "permission_error")


def unavailable(code: str, message: str, retry_after: int | None = None) -> GatewayRefusal:
    return GatewayRefusal(503, code, message, "service_unavailable", retry_after=retry_after)


@dataclass(frozen=True)
class GatewayCaller:
    """An authenticated inference caller: a router key, or an instance's own key."""

    tenant_id: UUID
    key_id: UUID  # the ApiKey's id; for an instance key, the instance's id
    allowed_models: tuple[str, ...] | None = None
    sovereignty: bool = False
    instance_id: UUID | None = None  # an instance key reaches only this instance


@dataclass(frozen=True)
class CatalogModel:
    slug: str
    serveable: bool
    vendor: str | None
    created: int  # Unix seconds, for the OpenAI model list
    modality: str | None = None  # chat, embedding, ... (domain.pricing.MODALITIES)
    cache_ttl: int | None = None  # seconds answers are served from the response cache; None: off


@dataclass(frozen=True)
class Target:
    """A GPU instance or a BYOK upstream (both are instances), as the read model lists it."""

    instance_id: UUID
    tenant_id: UUID
    kind: str  # gpu or byok
    model_id: str | None
    region: str | None
    vendor: str | None  # a BYOK upstream's vendor
    status: str
    endpoint_url: str | None
    created_at: datetime

    @property
    def is_byok(self) -> bool:
        return self.kind == "byok"


# The model a request that names none gets from the vendor it names (seed 003's
# ``{"vendor": "anthropic", "messages": [...]}``): the vendor's first model in seed 003's list.
VENDOR_DEFAULT_MODELS = {
    "openai": "gpt-4o",
    "anthropic": "claude-sonnet-4-5",
    "google": "gemini-2.5-pro",
    "deepseek": "deepseek-v4-pro",
    "qwen": "qwen3-max",
    "moonshot": "kimi-k2",
    "minimax": "minimax-m3",
    "mistral": "mistral-nemo-12b",
}


def default_model(vendor: object) -> str | None:
    """The model a request naming ``vendor`` but no model is served with (``None``: none)."""
    return VENDOR_DEFAULT_MODELS.get(vendor) if isinstance(vendor, str) else None


def may_use(caller: GatewayCaller, model: CatalogModel) -> bool:
    """Whether the caller may name this model at all (the models list shows these)."""
    if caller.allowed_models is not None and model.slug not in caller.allowed_models:
        return False
    return not (caller.sovereignty and not model.serveable)


def check_model(
    caller: GatewayCaller,
    slug: object,
    model: CatalogModel | None,
    kind: str = "chat/completions",
) -> CatalogModel:
    """The model a request names, if it exists, the caller may use it, and it does what
    ``kind`` (the endpoint: chat/completions or embeddings) asks of it."""
    if not isinstance(slug, str) or not slug:
        raise GatewayRefusal(400, "model_not_found", "the body must name a model", param="model")
    if model is None:
        raise GatewayRefusal(
            400, "model_not_found", f"the model {slug!r} does not exist", param="model"
        )
    if caller.allowed_models is not None and slug not in caller.allowed_models:
        raise forbidden("model_not_allowed", f"this key may not use the model {slug!r}")
    if caller.sovereignty and not model.serveable:
        raise forbidden(
            "sovereignty_violation",
            f"this key is in sovereignty mode; {slug!r} can't run on the tenant's EU GPUs",
        )
    check_modality(model, kind)
    return model


def check_modality(model: CatalogModel, kind: str) -> None:
    """An embedding model answers only /embeddings, and /embeddings only an embedding model
    (when the catalog knows the model's modality)."""
    if model.modality is None or (kind == "embeddings") == (model.modality == "embedding"):
        return
    wanted = "an embedding model" if kind == "embeddings" else "a chat model"
    raise GatewayRefusal(
        400,
        "wrong_modality",
        f"the model {model.slug!r} is a {model.modality!r} model; /v1/{kind} needs {wanted}",
        param="model",
    )


def route(
    caller: GatewayCaller,
    model: CatalogModel,
    instances: list[Target],
    in_flight: Mapping[UUID, int],
    now: datetime,
    expected_deploy_seconds: float,
    vendor: str | None = None,
    key_id: UUID | None = None,
) -> list[Target]:
    """The targets that may serve this request, best first (the rest for one retry).

    ``instances`` are the caller's tenant's live instances and BYOK upstreams; ``vendor`` is
    the body's ``vendor`` field and ``key_id`` the ``X-Key-Id`` header (already known to name
    one of this tenant's instances). Raises ``GatewayRefusal`` when nothing can serve.
    """
    if caller.instance_id is not None:
        return _own_instance(caller, model, instances, now, expected_deploy_seconds)
    if key_id is not None or vendor is not None:
        if caller.sovereignty:
            raise forbidden(
                "sovereignty_violation",
                "this key is in sovereignty mode: it never reaches a BYOK upstream",
            )
        if key_id is not None:
            chosen = [t for t in instances if t.instance_id == key_id]
            if not chosen or not chosen[0].is_byok or chosen[0].status != "running":
                raise forbidden("forbidden", "X-Key-Id must name one of your active BYOK keys")
            return chosen
        byok = [t for t in instances if t.is_byok and t.status == "running" and t.vendor == vendor]
        if not byok:
            raise unavailable("model_unavailable", f"you have no active BYOK key for {vendor!r}")
        return byok
    gpus = [
        t
        for t in instances
        if not t.is_byok
        and t.model_id == model.slug
        and (not caller.sovereignty or t.region == SOVEREIGN_REGION)
    ]
    running = sorted(
        (t for t in gpus if t.status == "running" and t.endpoint_url),
        key=lambda t: in_flight.get(t.instance_id, 0),
    )
    byok = []
    if not caller.sovereignty and model.vendor is not None:
        byok = [
            t for t in instances if t.is_byok and t.status == "running" and t.vendor == model.vendor
        ]
    if running or byok:
        return running + byok
    _refuse_cold(
        model.slug, [t for t in gpus if t.status in COLD_STATUSES], now, expected_deploy_seconds
    )
    raise unavailable("model_unavailable", f"the model {model.slug!r} has no running instance")


def _own_instance(
    caller: GatewayCaller,
    model: CatalogModel,
    instances: list[Target],
    now: datetime,
    expected_deploy_seconds: float,
) -> list[Target]:
    own = next((t for t in instances if t.instance_id == caller.instance_id), None)
    if own is None:
        raise unavailable("model_unavailable", "this key's instance is gone")
    if own.model_id != model.slug:
        raise forbidden(
            "model_not_allowed", f"this instance key reaches only its instance of {own.model_id!r}"
        )
    if own.status == "running" and own.endpoint_url:
        return [own]
    _refuse_cold(
        model.slug, [own] if own.status in COLD_STATUSES else [], now, expected_deploy_seconds
    )
    raise unavailable("model_unavailable", f"this key's instance is {own.status}")


def _refuse_cold(slug: str, cold: list[Target], now: datetime, expected: float) -> None:
    if not cold:
        return
    raise cold_start(slug, max(t.created_at for t in cold), now, expected)


class OnDemand:
    """Boots a model for a tenant with on-demand boot on, when nothing serves it (issue 18 §3).

    ``boot`` runs only on the way to a ``model_unavailable`` refusal: never on a request that
    a target serves.
    """

    OFF_SECONDS = 1.0  # how long a tenant found with on-demand boot off is taken as off

    def __init__(self, instances: Instances, region: str, provider: str, instance_type: str):
        self.instances = instances
        self.region = region
        self.provider = provider
        self.instance_type = instance_type
        # Tenants found with it off, until when: a burst of requests for a model nothing
        # serves loads the tenant about once a second, not once a request.
        self._off_until: dict[UUID, float] = {}

    def applies(self, caller: GatewayCaller, model: CatalogModel) -> bool:
        """Whether a request may boot its model: a router key's, of a serveable model, of a
        tenant not just found with on-demand boot off."""
        return (
            caller.instance_id is None
            and model.serveable
            and self._off_until.get(caller.tenant_id, 0.0) <= time.monotonic()
        )

    def boot(
        self, caller: GatewayCaller, model: CatalogModel, ip: str | None = None
    ) -> Booting | None:
        """The instance booting for this request (started now or before); ``None``: the
        tenant has on-demand boot off."""
        booting = self.instances.boot_on_demand(
            caller.tenant_id,
            model.slug,
            # A sovereign key reaches only EU GPUs: what it boots runs there.
            SOVEREIGN_REGION if caller.sovereignty else self.region,
            self.provider,
            self.instance_type,
            Actor(id=f"key:{caller.key_id}", ip=ip),
        )
        if booting is None:
            if len(self._off_until) >= 10_000:
                self._off_until.clear()
            self._off_until[caller.tenant_id] = time.monotonic() + self.OFF_SECONDS
        return booting


def cold_start(slug: str, requested_at: datetime, now: datetime, expected: float) -> GatewayRefusal:
    """503 ``cold_start``, with ``Retry-After`` from the deploy's expected remaining time."""
    remaining = expected - (now - requested_at).total_seconds()
    return unavailable(
        "cold_start",
        f"the model {slug!r} is starting; retry shortly",
        retry_after=max(1, math.ceil(remaining)),
    )


def estimate_tokens(characters: int) -> int:
    """Tokens of text when no upstream counted them: about four characters a token."""
    return 0 if characters <= 0 else max(1, round(characters / 4))


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class GatewaySecrets:
    """The keys a target is called with, opened only in memory, at call time.

    What is kept per process: the ciphertexts and the tenant's wrapped data key (an instance's
    never change), and for instance keys only their hashes.
    """

    def __init__(self, store: EventStore, secret_box: SecretBox) -> None:
        self.store = store
        self.secret_box = secret_box
        self._sealed: dict[UUID, tuple[bytes, bytes, bytes]] = {}  # id: (wrapped, ik, external)

    def _sealed_of(self, instance_id: UUID) -> tuple[bytes, bytes, bytes] | None:
        sealed = self._sealed.get(instance_id)
        if sealed is None:
            instance = self.store.find(Instance, instance_id)
            tenant = None if instance is None else self.store.find(Tenant, instance.tenant_id)
            if instance is None or tenant is None:
                return None
            sealed = (
                tenant.wrapped_data_key,
                instance.api_key_ciphertext,
                instance.external_key_ciphertext,
            )
            if len(self._sealed) >= 100_000:
                self._sealed.clear()
            self._sealed[instance_id] = sealed
        return sealed

    def is_loaded(self, instance_id: UUID) -> bool:
        return instance_id in self._sealed

    def instance_key(self, instance_id: UUID) -> str | None:
        """A GPU instance's own key (the bearer its endpoint wants)."""
        sealed = self._sealed_of(instance_id)
        if sealed is None or not sealed[1]:
            return None
        return self.secret_box.decrypt(sealed[0], sealed[1])

    def upstream_key(self, instance_id: UUID) -> str | None:
        """A BYOK upstream's external key."""
        sealed = self._sealed_of(instance_id)
        if sealed is None or not sealed[2]:
            return None
        return self.secret_box.decrypt(sealed[0], sealed[2])

    def instance_key_matches(self, instance_id: UUID, token: str) -> bool:
        """Whether ``token`` is this instance's key (compared in constant time)."""
        key = self.instance_key(instance_id)
        return key is not None and secrets.compare_digest(token_hash(key), token_hash(token))
