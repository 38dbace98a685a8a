"""The Instance aggregate: a GPU model deployment and its lifecycle."""

from __future__ import annotations

import re
from decimal import Decimal
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.base import Actor, ConflictError, InvalidValueError
from domain.values import Text, clean_text

STATUSES = ("pending", "deploying", "running", "stopped", "failed", "destroyed")

# The lifecycle: which status may follow which. ``destroyed`` is terminal.
TRANSITIONS: dict[str, frozenset[str]] = {
    "pending": frozenset({"deploying", "failed", "destroyed"}),
    "deploying": frozenset({"running", "failed", "destroyed"}),
    "running": frozenset({"stopped", "failed", "destroyed"}),
    "stopped": frozenset({"deploying", "destroyed"}),
    "failed": frozenset({"pending", "destroyed"}),
    "destroyed": frozenset(),
}

SLUG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}\Z")
SLUG = Text(
    128, pattern=SLUG_RE, message="{field} must be 1-128 characters: letters, digits, . _ : / -"
)
LABEL = Text(100, strip=True)
# The message never repeats the key: it is a secret even when it is malformed. Its last four
# characters are stored in clear (key_last4), so the whole key must be storable text.
EXTERNAL_KEY = Text(
    500,
    min_length=8,
    pattern=re.compile(r"\S+\Z"),
    message="{field} must be {min}-{max} characters without whitespace",
)
MAX_REASON = 1000  # a provider's failure reason or a health check's error, as stored
INSTANCE_KEY_PREFIX = "hp_ik_"

# BYOK upstreams (seed 003's vendors plus seed 000's Mistral) and where their APIs live.
UPSTREAMS: dict[str, str] = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com/v1",
    "google": "https://generativelanguage.googleapis.com/v1beta/openai",
    "mistral": "https://api.mistral.ai/v1",
    "deepseek": "https://api.deepseek.com/v1",
    "qwen": "https://dashscope-intl.aliyuncs.com/compatible-mode/v1",
    "moonshot": "https://api.moonshot.ai/v1",
    "minimax": "https://api.minimax.io/v1",
}


class IllegalTransitionError(ConflictError):
    """The instance can't move from its current status to the requested one."""


class NotDeployedError(ConflictError):
    """The operation needs a GPU deployment, and this instance is a BYOK upstream."""


def check_upstream(upstream: str) -> str:
    if upstream not in UPSTREAMS:
        raise InvalidValueError("upstream", f"upstream must be one of {', '.join(UPSTREAMS)}")
    return upstream


def check_label(name: str) -> str:
    return LABEL.check("name", name)


def check_external_key(key: str) -> str:
    return EXTERNAL_KEY.check("external_key", key)


def check_slug(field: str, value: str) -> str:
    return SLUG.check(field, value)


class Instance(Aggregate):
    """A model deployed on a GPU at a provider, with its own inference key."""

    class DeployRequested(Aggregate.Created):
        """A tenant asked for a model to be deployed; the instance key is stored encrypted."""

        tenant_id: UUID
        model_id: str
        region: str
        provider: str
        instance_type: str
        api_key_ciphertext: bytes
        api_key_prefix: str
        hourly_rate_eur: Decimal
        actor: Actor

    @event(DeployRequested)
    def __init__(
        self,
        tenant_id: UUID,
        actor: Actor,
        model_id: str | None = None,
        region: str | None = None,
        provider: str | None = None,
        instance_type: str | None = None,
        api_key_ciphertext: bytes = b"",
        api_key_prefix: str = "",
        hourly_rate_eur: Decimal = Decimal(0),
    ) -> None:
        # Defaults serve the BYOK created event (UpstreamAttached), which sets its own fields.
        self.tenant_id = tenant_id
        # The GPU rate is fixed at deploy time, so billing never consults a mutable price.
        self.hourly_rate_eur = hourly_rate_eur
        self.model_id = model_id
        self.region = region
        self.provider = provider
        self.instance_type = instance_type
        self.api_key_ciphertext = api_key_ciphertext
        self.api_key_prefix = api_key_prefix
        self.status = "pending"
        self.status_reason: str | None = None
        self.endpoint_url: str | None = None
        self.kind = "gpu"
        self.last_check: dict[str, object] | None = None
        self.name: str | None = None
        self.upstream: str | None = None
        self.external_key_ciphertext = b""
        self.external_key_last4: str | None = None

    @classmethod
    def request_deploy(
        cls,
        tenant_id: UUID,
        model_id: str,
        region: str,
        provider: str,
        instance_type: str,
        api_key_ciphertext: bytes,
        api_key_prefix: str,
        hourly_rate_eur: Decimal,
        actor: Actor,
    ) -> Instance:
        return cls(
            tenant_id=tenant_id,
            model_id=check_slug("model_id", model_id),
            region=check_slug("region", region),
            provider=check_slug("provider", provider),
            instance_type=check_slug("instance_type", instance_type),
            api_key_ciphertext=api_key_ciphertext,
            api_key_prefix=api_key_prefix,
            hourly_rate_eur=hourly_rate_eur,
            actor=actor,
        )

    class UpstreamAttached(Aggregate.Created):
        """A tenant attached its own upstream key (BYOK): a logical instance, already usable.

        The external key enters the event only as ciphertext (tenant data key, AES-GCM); its
        last four characters are kept for recognition, as seed 003's key lists show them.
        """

        tenant_id: UUID
        name: str
        upstream: str
        external_key_ciphertext: bytes
        external_key_last4: str
        actor: Actor

        def apply(self, aggregate: Aggregate) -> None:
            assert isinstance(aggregate, Instance)
            aggregate.kind = "byok"
            aggregate.name = self.name
            aggregate.upstream = aggregate.provider = self.upstream
            aggregate.external_key_ciphertext = self.external_key_ciphertext
            aggregate.external_key_last4 = self.external_key_last4
            # A logical instance: usable at once, at the upstream's own endpoint.
            aggregate.status = "running"
            aggregate.endpoint_url = UPSTREAMS[self.upstream]

    @classmethod
    def attach_upstream(
        cls,
        tenant_id: UUID,
        name: str,
        upstream: str,
        external_key_ciphertext: bytes,
        external_key_last4: str,
        actor: Actor,
    ) -> Instance:
        return cls._create(
            cls.UpstreamAttached,
            tenant_id=tenant_id,
            name=check_label(name),
            upstream=check_upstream(upstream),
            external_key_ciphertext=external_key_ciphertext,
            external_key_last4=external_key_last4,
            actor=actor,
        )

    class HealthChecked(Aggregate.Event):
        """A health-check chat completion was sent to the instance's endpoint."""

        ok: bool
        status_code: int | None
        latency_ms: int
        error: str | None
        actor: Actor

        def apply(self, aggregate: Aggregate) -> None:
            assert isinstance(aggregate, Instance)
            aggregate.last_check = {
                "ok": self.ok,
                "status_code": self.status_code,
                "latency_ms": self.latency_ms,
                "error": self.error,
                "at": self.timestamp,
            }

    def record_check(
        self, ok: bool, status_code: int | None, latency_ms: int, error: str | None, actor: Actor
    ) -> None:
        self.check_deployed()
        if self.status != "running":
            raise ConflictError(f"instance is {self.status}; only a running instance is tested")
        self.trigger_event(
            self.HealthChecked,
            ok=ok,
            status_code=status_code,
            latency_ms=latency_ms,
            error=None if error is None else clean_text(error, MAX_REASON),
            actor=actor,
        )

    @property
    def is_byok(self) -> bool:
        return self.kind == "byok"

    def check_deployed(self) -> None:
        if self.is_byok:
            raise NotDeployedError("a BYOK upstream has no GPU deployment to operate on")

    @property
    def is_destroyed(self) -> bool:
        return self.status == "destroyed"

    def check_transition(self, status: str) -> None:
        if status not in STATUSES:
            raise InvalidValueError("status", f"status must be one of {', '.join(STATUSES)}")
        if status not in TRANSITIONS[self.status]:
            raise IllegalTransitionError(f"instance is {self.status}; it can't become {status}")

    def transition(
        self,
        status: str,
        actor: Actor,
        reason: str | None = None,
        endpoint_url: str | None = None,
    ) -> None:
        """Move to ``status`` if the lifecycle allows it."""
        self.check_transition(status)
        if reason is not None:  # often a provider's words: stored as text, never refused
            reason = clean_text(reason, MAX_REASON)
        self._status_changed(status=status, reason=reason, endpoint_url=endpoint_url, actor=actor)

    @event("StatusChanged")
    def _status_changed(
        self, status: str, reason: str | None, endpoint_url: str | None, actor: Actor
    ) -> None:
        self.status = status
        self.status_reason = reason
        if status == "running":
            self.endpoint_url = endpoint_url
        elif status in ("destroyed", "failed", "stopped", "pending"):
            self.endpoint_url = None

    def destroy(self, actor: Actor) -> None:
        self.transition("destroyed", actor=actor)
