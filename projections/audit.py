"""Read model: the audit log, one entry per event of every aggregate (secrets redacted)."""

from __future__ import annotations

import base64
import re
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, AggregateCreated
from psycopg import Cursor
from psycopg.types.json import Jsonb

from domain.apikey import ApiKey
from domain.base import Actor
from domain.budget import Budget
from domain.instance import Instance
from domain.operator import Operator
from domain.pricing import GpuRate, Model
from domain.tenant import Tenant
from domain.usage import UsageBatch
from domain.webhook import Webhook
from projections.base import Handler, Projection, live_schema

SCHEMA = live_schema("audit")

# Every aggregate whose events are audited. NameIndex is left out on purpose: its events are
# internal bookkeeping of unique names, and each one accompanies an audited event anyway.
AUDITED: tuple[type[Aggregate], ...] = (
    Tenant,
    ApiKey,
    Instance,
    Budget,
    Model,
    GpuRate,
    UsageBatch,
    Operator,
    Webhook,
)
TARGET_TYPES: dict[type[Aggregate], str] = {ApiKey: "key", UsageBatch: "usage"}

# Envelope fields every event has; the entry's own columns already say what they mean.
ENVELOPE = frozenset(
    {"originator_id", "originator_version", "timestamp", "actor", "originator_topic"}
)
REDACTED = "[redacted]"
SECRET_FIELDS = frozenset({"token_hash", "api_key_ciphertext", "wrapped_data_key", "api_key"})
SECRET_WORDS = ("secret", "ciphertext", "password")

CREATE_ENTRIES = """
CREATE TABLE IF NOT EXISTS {s}.entries (
    position bigint PRIMARY KEY,
    at timestamptz NOT NULL,
    actor text NOT NULL,
    client_ip text,
    tenant_id uuid,
    action text NOT NULL,
    target_type text NOT NULL,
    target_id uuid NOT NULL,
    changes jsonb NOT NULL
)"""
CREATE_OWNERS = """
CREATE TABLE IF NOT EXISTS {s}.owners (aggregate_id uuid PRIMARY KEY, tenant_id uuid NOT NULL)"""
CREATE_INDEXES = [
    f"CREATE INDEX IF NOT EXISTS entries_{col} ON {{s}}.entries ({col}, position DESC)"
    for col in ("tenant_id", "actor", "action", "target_type", "target_id")
]
INSERT_ENTRY = """
INSERT INTO {s}.entries (position, at, actor, client_ip, tenant_id, action, target_type,
                         target_id, changes)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"""
INSERT_OWNER = (
    "INSERT INTO {s}.owners (aggregate_id, tenant_id) VALUES (%s, %s) ON CONFLICT DO NOTHING"
)
SELECT_OWNER = "SELECT tenant_id FROM {s}.owners WHERE aggregate_id = %s"

COLUMNS = "position, at, actor, client_ip, tenant_id, action, target_type, target_id, changes"
FILTERS = ("tenant_id", "actor", "action", "target_type", "target_id")


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
    fields = {k: v for k, v in vars(event).items() if k not in ENVELOPE}
    if isinstance(event, UsageBatch.Recorded):
        # Thousands of records: the audit log says how many, the usage model holds them.
        fields.pop("rates", None)
        fields["records"] = len(fields["records"])
    return json_safe(fields)


class AuditProjection(Projection):
    name = "audit"
    tables = [CREATE_ENTRIES, CREATE_OWNERS, *CREATE_INDEXES]

    def tenant_of(self, curs: Cursor[Any], e: Any, aggregate: type[Aggregate]) -> UUID | None:
        if aggregate is Tenant:
            return e.originator_id
        tenant_id = getattr(e.event, "tenant_id", None)
        if tenant_id is not None:
            if isinstance(e.event, AggregateCreated):
                curs.execute(e.sql(INSERT_OWNER), (e.originator_id, tenant_id))
            return tenant_id
        row = curs.execute(e.sql(SELECT_OWNER), (e.originator_id,)).fetchone()
        return row["tenant_id"] if row else None

    def record(self, curs: Cursor[Any], e: Any, aggregate: type[Aggregate]) -> None:
        actor = getattr(e.event, "actor", None) or Actor.system()
        kind = target_type(aggregate)
        curs.execute(
            e.sql(INSERT_ENTRY),
            (
                e.position,
                e.timestamp,
                actor.id,
                actor.ip,
                self.tenant_of(curs, e, aggregate),
                f"{kind}.{snake(type(e.event).__name__)}",
                kind,
                e.originator_id,
                Jsonb(changes_of(e.event)),
            ),
        )

    handlers: dict[type, Handler] = {}


def _recorder(aggregate: type[Aggregate]) -> Handler:
    def handler(self: AuditProjection, curs: Cursor[Any], e: Any) -> None:
        self.record(curs, e, aggregate)

    return handler


# Discovered, not listed: an event added to an audited aggregate is audited without a change here.
AuditProjection.handlers = {
    cls: _recorder(aggregate) for aggregate in AUDITED for cls in event_classes(aggregate)
}


def encode_position(position: int) -> str:
    return base64.urlsafe_b64encode(str(position).encode()).decode().rstrip("=")


def decode_position(cursor: str) -> int:
    """Decode an opaque page cursor; ``ValueError`` if it isn't one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not raw.isdigit():
            raise ValueError(raw)
        return int(raw)
    except Exception as e:  # any malformed input is the caller's mistake
        raise ValueError("invalid cursor") from e


def _shape(row: dict[str, Any]) -> dict[str, Any]:
    entry = dict(row)
    entry["id"] = entry.pop("position")
    return entry


def list_entries(
    curs: Cursor[Any],
    scope_tenant: UUID | None,
    filters: dict[str, Any],
    limit: int,
    cursor: str | None,
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of entries, newest first; ``since``/``until`` bound ``at`` half-open."""
    unknown = set(filters) - {*FILTERS, "since", "until"}
    if unknown:
        raise TypeError(f"unknown audit filters: {sorted(unknown)}")
    filters = {k: v for k, v in filters.items() if v is not None}
    if scope_tenant is not None:
        if filters.get("tenant_id", scope_tenant) != scope_tenant:
            return [], None  # another tenant's entries don't exist for this caller
        filters["tenant_id"] = scope_tenant
    where, params = ["true"], []
    for column in FILTERS:
        if column in filters:
            where.append(f"{column} = %s")
            params.append(filters[column])
    if "since" in filters:
        where.append("at >= %s")
        params.append(filters["since"])
    if "until" in filters:
        where.append("at < %s")
        params.append(filters["until"])
    if cursor:
        where.append("position < %s")
        params.append(decode_position(cursor))
    rows = curs.execute(
        f"SELECT {COLUMNS} FROM {SCHEMA}.entries WHERE {' AND '.join(where)}"
        " ORDER BY position DESC LIMIT %s",
        (*params, limit + 1),
    ).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_position(rows[-1]["position"]) if more else None
    return [_shape(r) for r in rows], next_cursor
