"""The Instance aggregate: a GPU model deployment and its lifecycle."""

from __future__ import annotations

import re
from decimal import Decimal
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.base import Actor, ConflictError, InvalidValueError

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
INSTANCE_KEY_PREFIX = "hp_ik_"


class IllegalTransitionError(ConflictError):
    """The instance can't move from its current status to the requested one."""


def check_slug(field: str, value: str) -> str:
    if not SLUG_RE.match(value):
        raise InvalidValueError(
            field, f"{field} must be 1-128 characters: letters, digits, . _ : / -"
        )
    return value


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
        model_id: str,
        region: str,
        provider: str,
        instance_type: str,
        api_key_ciphertext: bytes,
        api_key_prefix: str,
        hourly_rate_eur: Decimal,
        actor: Actor,
    ) -> None:
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
