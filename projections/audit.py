"""Read model: the audit log, one entry per event of every aggregate (secrets redacted)."""

from __future__ import annotations

import base64
import functools
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
COPY_ENTRIES = """
COPY {s}.entries (position, at, actor, client_ip, tenant_id, action, target_type, target_id,
                  changes) FROM STDIN"""
INSERT_OWNERS = """
INSERT INTO {s}.owners (aggregate_id, tenant_id)
SELECT * FROM unnest(%s::uuid[], %s::uuid[]) ON CONFLICT DO NOTHING"""
SELECT_OWNERS = "SELECT aggregate_id, tenant_id FROM {s}.owners WHERE aggregate_id = ANY(%s)"
OWNER_CACHE_SIZE = 200_000  # aggregate → tenant never changes; bound the memory it may take

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


class _Batch:
    """The entries and new owners of one runner batch, written together at its end."""

    def __init__(self) -> None:
        self.rows: list[list[Any]] = []  # entries; column 4 (tenant) may wait for the owners
        self.unresolved: list[tuple[int, UUID]] = []  # (row index, aggregate id)
        self.owners: dict[UUID, UUID] = {}  # created in this batch


class AuditProjection(Projection):
    """Collects a runner batch's entries in memory, then writes them with one COPY."""

    name = "audit"
    tables = [CREATE_ENTRIES, CREATE_OWNERS, *CREATE_INDEXES]

    def __init__(self) -> None:
        self._batches: dict[str, _Batch] = {}  # per target schema (live and rebuild)
        self._owners: dict[UUID, UUID] = {}  # committed facts, kept across batches

    def begin(self, schema: str) -> None:
        self._batches[schema] = _Batch()

    def tenant_of(self, batch: _Batch, e: Any, aggregate: type[Aggregate]) -> UUID | None:
        """The owning tenant, or ``None`` (then ``batch.unresolved`` asks the owners table)."""
        if aggregate is Tenant:
            return e.originator_id
        tenant_id = getattr(e.event, "tenant_id", None)
        if tenant_id is not None:
            if isinstance(e.event, AggregateCreated):
                batch.owners[e.originator_id] = tenant_id
            return tenant_id
        return batch.owners.get(e.originator_id) or self._owners.get(e.originator_id)

    def record(self, curs: Cursor[Any], e: Any, aggregate: type[Aggregate]) -> None:
        batch = self._batches[e.schema]
        actor = getattr(e.event, "actor", None) or Actor.system()
        kind = target_type(aggregate)
        tenant_id = self.tenant_of(batch, e, aggregate)
        if tenant_id is None and aggregate is not Tenant:
            batch.unresolved.append((len(batch.rows), e.originator_id))
        batch.rows.append(
            [
                e.position,
                e.timestamp,
                actor.id,
                actor.ip,
                tenant_id,
                f"{kind}.{snake(type(e.event).__name__)}",
                kind,
                e.originator_id,
                Jsonb(changes_of(e.event)),
            ]
        )

    def flush(self, curs: Cursor[Any], schema: str) -> None:
        batch = self._batches.pop(schema, None)
        if batch is None or not batch.rows:
            return
        if batch.owners:
            ids = list(batch.owners)
            curs.execute(INSERT_OWNERS.format(s=schema), (ids, [batch.owners[i] for i in ids]))
        if batch.unresolved:
            wanted = list({a for _, a in batch.unresolved})
            found = {
                r["aggregate_id"]: r["tenant_id"]
                for r in curs.execute(SELECT_OWNERS.format(s=schema), (wanted,)).fetchall()
            }
            for index, aggregate_id in batch.unresolved:
                batch.rows[index][4] = found.get(aggregate_id)
            self._remember(found)
        self._remember(batch.owners)
        with curs.copy(COPY_ENTRIES.format(s=schema)) as copy:
            for row in batch.rows:
                copy.write_row(row)

    def _remember(self, owners: dict[UUID, UUID]) -> None:
        if len(self._owners) + len(owners) > OWNER_CACHE_SIZE:
            self._owners.clear()
        self._owners.update(owners)

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
