"""Ports: what the application needs from the outside world."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
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


class Clock(Protocol):
    def now(self) -> datetime: ...


class TenantDirectory(Protocol):
    """Finds the aggregates a tenant owns (answered by read models, caught up first)."""

    def owned_ids(self, tenant_id: object) -> dict[str, list[object]]:
        """``{"keys": [...], "instances": [...], "budgets": [...]}`` of live resources."""
        ...


class RequestIdRegistry(Protocol):
    """Usage request ids already recorded (kept by the event store, written with the events)."""

    def seen(self, pairs: Sequence[tuple[UUID, str]]) -> set[tuple[UUID, str]]: ...


class SpendReader(Protocol):
    """EUR spent by a tenant (or one key) in ``[start, end)``, answered by the cost read models."""

    def spent(
        self, tenant_id: UUID, key_id: UUID | None, start: datetime, end: datetime | None
    ) -> Decimal: ...
