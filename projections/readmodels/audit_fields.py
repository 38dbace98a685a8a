"""What an audit entry says about an event: its target, its action, its fields (secrets redacted)."""

from __future__ import annotations

import functools
import re
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.base import Actor
from domain.capacity import Capacity
from domain.fairshare import FairshareGroup
from domain.operator import Operator
from domain.owned import OWNED
from domain.pricing import GpuRate, Model
from domain.tenant import Tenant
from domain.usage import UsageBatch

# Every aggregate whose events are audited: the tenants, every kind they own (``domain.owned``)
# and the operator's (the price book, capacity, fair-share groups). NameIndex is left out on purpose: its events are internal bookkeeping of
# unique names, and each one accompanies an audited event anyway.
AUDITED: tuple[type[Aggregate], ...] = (
    Tenant,
    *(k.aggregate for k in OWNED),
    Model,
    GpuRate,
    Capacity,
    FairshareGroup,
    Operator,
)
# The owned kinds' names (``ApiKey`` is ``key``); any other aggregate is its class in snake case.
TARGET_TYPES: dict[type[Aggregate], str] = {k.aggregate: k.name for k in OWNED}

# Envelope fields every event has; the entry's own columns already say what they mean.
ENVELOPE = frozenset(
    {"originator_id", "originator_version", "timestamp", "actor", "originator_topic"}
)
REDACTED = "[redacted]"
# The owned kinds' secrets, the tenant's data key, the operator's token hash, any plaintext key.
SECRET_FIELDS = frozenset({"wrapped_data_key", "token_hash", "api_key"}).union(
    *(k.secret_fields for k in OWNED)
)
SECRET_WORDS = ("secret", "ciphertext", "password")


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def event_classes(aggregate: type[Aggregate]) -> list[type]:
    """Every event class an aggregate defines, including those its ``@event`` methods made."""
    return [
        v
        for v in vars(aggregate).values()
        if isinstance(v, type) and issubclass(v, aggregate.Event)
    ]


def target_type(aggregate: type[Aggregate]) -> str:
    return TARGET_TYPES.get(aggregate, snake(aggregate.__name__))


def action_of(aggregate: type[Aggregate], event_class: type) -> str:
    """The entry's action: ``key.issued`` for ``ApiKey.Issued``."""
    return f"{target_type(aggregate)}.{snake(event_class.__name__)}"


@functools.cache  # field names are few: decide each once
def is_secret(name: str) -> bool:
    lowered = name.lower()
    # "token" as a word of the name: token_hash and admin_token, not tokens_per_minute.
    return (
        lowered in SECRET_FIELDS
        or any(word in lowered for word in SECRET_WORDS)
        or "token" in lowered.split("_")
    )


def json_safe(value: Any) -> Any:
    if isinstance(value, bytes):  # only ever key material in events: never shown
        return REDACTED
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, UUID | Decimal):
        return str(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Actor):
        return {"id": value.id, "ip": value.ip}
    if isinstance(value, dict):
        return {str(k): REDACTED if is_secret(str(k)) else json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def changes_of(event: Any) -> dict[str, Any]:
    """The event's own fields, JSON-safe, with secrets redacted."""
    if isinstance(event, UsageBatch.Recorded):
        # Thousands of records: the audit log says how many, the usage model holds them.
        return {"tenant_id": str(event.tenant_id), "records": len(event.records)}
    fields = {k: v for k, v in vars(event).items() if k not in ENVELOPE}
    return json_safe(fields)
