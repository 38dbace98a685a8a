"""Ports: what the application needs from the outside world."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Protocol
from uuid import UUID


class SecretBox(Protocol):
    """Envelope encryption: a data key per tenant, wrapped by a master key."""

    def new_wrapped_data_key(self) -> bytes:
        """A fresh data key, wrapped (encrypted) by the master key."""
        ...

    def encrypt(self, wrapped_data_key: bytes, plaintext: str) -> bytes: ...

    def decrypt(self, wrapped_data_key: bytes, ciphertext: bytes) -> str: ...


class Fingerprinter(Protocol):
    """A keyed hash: equal texts have equal fingerprints, which reveal nothing without the key
    (an email's fingerprint finds its user without the email being stored in clear)."""

    def fingerprint(self, purpose: str, text: str) -> str: ...


class Passwords(Protocol):
    """A slow, salted password hash (argon2id): the hash is kept, never the password."""

    def hash(self, password: str) -> str: ...

    def verify(self, password_hash: str, password: str) -> bool:
        """Whether ``password`` is the one hashed; as slow for a wrong one as for the right."""
        ...

    def needs_rehash(self, password_hash: str) -> bool:
        """Whether the hash was made with weaker parameters than today's."""
        ...


@dataclass(frozen=True)
class UserClaims:
    """What a user's signed token says: who, for which tenant, until when."""

    user_id: UUID
    tenant_id: UUID
    expires_at: datetime


class UserTokens(Protocol):
    """Signed, expiring bearer tokens of users (JWTs)."""

    lifetime_seconds: int

    def issue(self, user_id: UUID, tenant_id: UUID, now: datetime) -> str: ...

    def is_token(self, token: str) -> bool:
        """Whether ``token`` has the form of a user's token (not whether it is valid)."""
        ...

    def read(self, token: str, now: datetime) -> UserClaims:
        """The claims of a valid, unexpired token; ``AuthenticationError`` otherwise."""
        ...


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    """Implements ``Clock`` with the system's time (tests pin it with freezegun)."""

    def now(self) -> datetime:
        return datetime.now(tz=UTC)


class TenantDirectory(Protocol):
    """Finds the aggregates a tenant owns (answered by read models, caught up first)."""

    def owned_ids(self, tenant_id: UUID) -> dict[str, list[UUID]]:
        """The ids of its live aggregates by kind name (``domain.owned``): ``{"key": [...], ...}``,
        with every kind that offboarding ends."""
        ...


class BudgetWatch(Protocol):
    """Told of the tenants whose recorded usage changed, whoever recorded it, so that their
    budgets are evaluated soon (``interfaces.jobs.budgets``)."""

    def watch(self, tenant_ids: set[UUID]) -> None: ...


class RequestIdRegistry(Protocol):
    """Usage request ids already recorded (kept by the event store, written with the events)."""

    def seen(self, ids: Mapping[UUID, Sequence[str]]) -> dict[UUID, set[str]]:
        """Which of these request ids (per tenant) are already recorded."""
        ...


class StoredVersions(Protocol):
    """The event store's latest version of aggregates, to tell whether a kept copy is current."""

    def stored_versions(self, aggregate_ids: Sequence[UUID]) -> dict[UUID, int]:
        """The latest stored version of each of these aggregates that exists."""
        ...


class SpendReader(Protocol):
    """EUR spent by a tenant (or one key) in ``[start, end)``, answered by the cost read models."""

    def spent(
        self, tenant_id: UUID, key_id: UUID | None, start: datetime, end: datetime | None
    ) -> Decimal: ...


@dataclass(frozen=True)
class Deployment:
    """What a GPU provider says about one instance's deployment."""

    state: str  # "allocating" | "running" | "failed" | "released" | "unknown"
    endpoint_url: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class DeploySpec:
    """What a provider needs to deploy an instance (the key is the endpoint's bearer key)."""

    instance_id: UUID
    model_id: str
    region: str
    instance_type: str
    api_key: str


class Provider(Protocol):
    """A GPU provider: allocates a machine, serves the model there, releases it."""

    def allocate(self, spec: DeploySpec) -> None:
        """Start (or restart, after a failure) the deployment; idempotent per instance."""
        ...

    def status(self, instance_id: UUID) -> Deployment: ...

    def logs(self, instance_id: UUID, limit: int) -> list[dict[str, object]]:
        """The most recent log lines, oldest first: ``{"at": datetime, "message": str}``."""
        ...

    def release(self, instance_id: UUID) -> None:
        """Give the GPU back; idempotent, and harmless for an unknown instance."""
        ...


class Providers(Protocol):
    def provider_for(self, name: str) -> Provider: ...


@dataclass(frozen=True)
class ChatCheck:
    """The outcome of one health-check chat completion against an endpoint."""

    ok: bool
    status_code: int | None
    latency_ms: int
    error: str | None = None
    reply: str | None = None
    usage: dict[str, int] | None = None


class EndpointProber(Protocol):
    def chat(self, endpoint_url: str, api_key: str, model: str) -> ChatCheck: ...
