"""Read model: the audit log, one entry per event of every aggregate (secrets redacted)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.domain import Aggregate, AggregateCreated
from psycopg import Cursor

from domain.base import Actor
from domain.tenant import Tenant
from domain.usage import UsageBatch
from projections.engine.base import Handler, Projection
from projections.engine.copytext import NULL, lines, text
from projections.readmodels.audit_fields import (
    AUDITED,
    ENVELOPE,
    REDACTED,
    SECRET_FIELDS,
    SECRET_WORDS,
    TARGET_TYPES,
    action_of,
    changes_of,
    event_classes,
    is_secret,
    json_safe,
    snake,
    target_type,
)
from projections.readmodels.audit_log import (
    COLUMNS,
    FILTERS,
    SCHEMA,
    decode_position,
    encode_position,
    list_entries,
)

__all__ = [
    "AUDITED",
    "COLUMNS",
    "ENVELOPE",
    "FILTERS",
    "REDACTED",
    "SCHEMA",
    "SECRET_FIELDS",
    "SECRET_WORDS",
    "TARGET_TYPES",
    "AuditProjection",
    "changes_of",
    "decode_position",
    "encode_position",
    "event_classes",
    "is_secret",
    "json_safe",
    "list_entries",
    "snake",
    "target_type",
]

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
    for col in FILTERS
]
COPY_ENTRIES = """
COPY {s}.entries (position, at, actor, client_ip, tenant_id, action, target_type, target_id,
                  changes) FROM STDIN"""
INSERT_OWNERS = """
INSERT INTO {s}.owners (aggregate_id, tenant_id)
SELECT * FROM unnest(%s::uuid[], %s::uuid[]) ON CONFLICT DO NOTHING"""
SELECT_OWNERS = "SELECT aggregate_id, tenant_id FROM {s}.owners WHERE aggregate_id = ANY(%s)"
OWNER_CACHE_SIZE = 200_000  # aggregate → tenant never changes; bound the memory it may take
# Aggregates made by one event that carries its tenant, and never changed after: nothing ever
# looks their owner up (a million usage batches would otherwise be a million owner rows).
SINGLE_EVENT: tuple[type[Aggregate], ...] = (UsageBatch,)
# ``changes_of`` a usage batch, as JSON text (jsonb keeps the value, not the spelling).
USAGE_CHANGES = '{"tenant_id": "%s", "records": %d}'
TEXT_CACHE_SIZE = 10_000
TENANT = 4  # the column of an entry's row that may wait for the owners table
SYSTEM = Actor.system()


def dump_json(value: Any) -> str:
    """JSON text for a jsonb column (jsonb keeps the value, not the spelling)."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # an integer beyond 64 bits: the standard library writes it
        return json.dumps(value)


class _Batch:
    """The entries and new owners of one runner batch, written together at its end."""

    def __init__(self) -> None:
        self.rows: list[list[str]] = []  # entries as COPY text columns
        self.unresolved: list[tuple[int, UUID]] = []  # (row index, aggregate id)
        self.owners: dict[UUID, UUID] = {}  # created in this batch


class AuditProjection(Projection):
    """Collects a runner batch's entries as COPY text, then writes them with one COPY."""

    name = "audit"
    folds = True
    tables = [CREATE_ENTRIES, CREATE_OWNERS]
    indexes = CREATE_INDEXES

    def __init__(self) -> None:
        self._batches: dict[str, _Batch] = {}  # per target schema (live and rebuild)
        self._owners: dict[UUID, UUID] = {}  # committed facts, kept across batches
        self._texts: dict[str | None, str] = {}
        self._uuids: dict[int, str] = {}

    def begin(self, schema: str) -> None:
        self._batches[schema] = _Batch()

    def tenant_of(self, batch: _Batch, event: Any, aggregate: type[Aggregate]) -> UUID | None:
        """The owning tenant, or ``None`` (then ``batch.unresolved`` asks the owners table)."""
        if aggregate is Tenant:
            return event.originator_id
        tenant_id = getattr(event, "tenant_id", None)
        if tenant_id is not None:
            if isinstance(event, AggregateCreated) and aggregate not in SINGLE_EVENT:
                batch.owners[event.originator_id] = tenant_id
            return tenant_id
        return batch.owners.get(event.originator_id) or self._owners.get(event.originator_id)

    def record(self, e: Any, aggregate: type[Aggregate], kind: str, action: str) -> None:
        batch = self._batches[e.schema]
        event = e.event
        actor = getattr(event, "actor", None) or SYSTEM
        tenant_id = self.tenant_of(batch, event, aggregate)
        if tenant_id is None and aggregate is not Tenant:
            batch.unresolved.append((len(batch.rows), event.originator_id))
        if aggregate is UsageBatch:  # the bulk of the log: its changes written directly
            changes = USAGE_CHANGES % (self._uuid_text(event.tenant_id), len(event.records))
        else:
            changes = text(dump_json(changes_of(event)))
        batch.rows.append(
            [
                str(e.position),
                event.timestamp.isoformat(),
                self._text(actor.id),
                self._text(actor.ip),
                NULL if tenant_id is None else tenant_id.hex,  # PostgreSQL reads either form
                action,
                kind,
                event.originator_id.hex,
                changes,
            ]
        )

    def _text(self, value: str | None) -> str:
        """COPY text of a value that repeats from event to event (actors, their addresses)."""
        cached = self._texts.get(value)
        if cached is None:
            if len(self._texts) > TEXT_CACHE_SIZE:
                self._texts.clear()
            cached = self._texts[value] = text(value)
        return cached

    def _uuid_text(self, value: UUID) -> str:
        cached = self._uuids.get(value.int)  # an int hashes in C, a UUID in Python
        if cached is None:
            if len(self._uuids) > TEXT_CACHE_SIZE:
                self._uuids.clear()
            cached = self._uuids[value.int] = str(value)
        return cached

    def detach(self, schema: str) -> Callable[[Cursor[Any]], None]:
        batch = self._batches.pop(schema, None)
        return lambda curs: self._write(curs, schema, batch)

    def _write(self, curs: Cursor[Any], schema: str, batch: _Batch | None) -> None:
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
                tenant_id = found.get(aggregate_id)
                batch.rows[index][TENANT] = NULL if tenant_id is None else str(tenant_id)
            self._remember(found)
        self._remember(batch.owners)
        with curs.copy(COPY_ENTRIES.format(s=schema)) as copy:
            copy.write(lines(batch.rows))

    def _remember(self, owners: dict[UUID, UUID]) -> None:
        if len(self._owners) + len(owners) > OWNER_CACHE_SIZE:
            self._owners.clear()
        self._owners.update(owners)

    handlers: dict[type, Handler] = {}


def _recorder(aggregate: type[Aggregate], event_class: type) -> Handler:
    kind, action = target_type(aggregate), action_of(aggregate, event_class)

    def handler(self: AuditProjection, curs: Cursor[Any], e: Any) -> None:
        self.record(e, aggregate, kind, action)

    return handler


# Discovered, not listed: an event added to an audited aggregate is audited without a change here.
AuditProjection.handlers = {
    cls: _recorder(aggregate, cls) for aggregate in AUDITED for cls in event_classes(aggregate)
}
