"""Replaying events: export lines for events, aggregate state at any moment (secrets redacted)."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import cache, lru_cache
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.usage import UsageBatch
from projections.readmodels.audit_fields import ENVELOPE, action_of, json_safe, target_type

# Replayed aggregates whose state is not exported: a usage batch's "state" is its bill.
NO_STATE: tuple[type[Aggregate], ...] = (UsageBatch,)
# Fields stored as plain JSON already (lists of strings, numbers, booleans and nulls, no secret):
# written as they are, which saves walking thousands of usage records value by value.
PLAIN_FIELDS: dict[type, tuple[str, ...]] = {UsageBatch.Recorded: ("rates", "records")}


def aggregate_class(cls: type) -> type[Aggregate]:
    """The aggregate class an event class belongs to (``ApiKey`` for ``ApiKey.Issued``)."""
    owner = getattr(sys.modules[cls.__module__], cls.__qualname__.split(".")[0])
    assert isinstance(owner, type) and issubclass(owner, Aggregate), cls
    return owner


def iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


@cache
def names_of(event_class: type) -> tuple[str, str]:
    """An event class's aggregate type and export type: ``("key", "key.issued")``."""
    aggregate = aggregate_class(event_class)
    return target_type(aggregate), action_of(aggregate, event_class)


def event_line(position: int, event: Any) -> dict[str, Any]:
    """One event of the export: what happened, to what, when, by whom; secrets redacted.

    Unlike the audit log, usage batches keep their records: the bill can be rebuilt from them.
    """
    kind, name = names_of(type(event))
    actor = getattr(event, "actor", None)
    fields = {k: v for k, v in vars(event).items() if k not in ENVELOPE}
    plain = {k: fields.pop(k) for k in PLAIN_FIELDS.get(type(event), ())}
    return {
        "kind": "event",
        "position": position,
        "type": name,
        "aggregate_type": kind,
        "aggregate_id": str(event.originator_id),
        "version": event.originator_version,
        "at": iso(event.timestamp),
        "actor": {"id": actor.id, "ip": actor.ip} if actor else {"id": "system", "ip": None},
        "data": {**json_safe(fields), **plain},
    }


# The stored state of a usage batch: the event's fields, its UUIDs, datetimes and actor tagged as
# {"_type_": ..., "_data_": ...} by the event store's transcoder; ``rates`` and ``records`` are
# plain JSON (see ``UsageBatch.record``). Any other shape is left to the event store's mapper.
USAGE_STATE_KEYS = frozenset(
    {"timestamp", "originator_topic", "tenant_id", "rates", "records", "actor"}
)
TAG_KEYS = frozenset({"_type_", "_data_"})
UTC_SUFFIX = "+00:00"
USAGE_NAMES = names_of(UsageBatch.Recorded)


@lru_cache(maxsize=1024)
def _uuid_text(hex_: str) -> str:
    return str(UUID(hex_))


def stored_usage_line(
    position: int, aggregate_id: str, version: int, state: dict[str, Any]
) -> dict[str, Any] | None:
    """``event_line`` of a usage batch, from its stored JSON; ``None`` if its shape is unknown.

    The bulk of an export is usage: reading it from the stored JSON spares decoding every value
    into Python objects and encoding it back. The line is the one ``event_line`` writes.
    """
    if state.keys() != USAGE_STATE_KEYS:
        return None
    timestamp, tenant_id, actor = state["timestamp"], state["tenant_id"], state["actor"]
    # Checked inline, not by a helper: this runs once per event of the export's bulk.
    if not (
        type(timestamp) is dict
        and timestamp.keys() == TAG_KEYS
        and timestamp["_type_"] == "datetime"
        and type(tenant_id) is dict
        and tenant_id.keys() == TAG_KEYS
        and tenant_id["_type_"] == "uuid"
    ):
        return None
    at = timestamp["_data_"]
    if not at.endswith(UTC_SUFFIX):
        return None
    if actor is None:
        shown_actor = {"id": "system", "ip": None}
    elif type(actor) is dict and actor.keys() == TAG_KEYS and actor["_type_"] == "actor":
        actor_id, actor_ip = actor["_data_"]
        shown_actor = {"id": actor_id, "ip": actor_ip}
    else:
        return None
    return {
        "kind": "event",
        "position": position,
        "type": USAGE_NAMES[1],
        "aggregate_type": USAGE_NAMES[0],
        "aggregate_id": aggregate_id,
        "version": version,
        "at": at[: -len(UTC_SUFFIX)] + "Z",
        "actor": shown_actor,
        "data": {
            "tenant_id": _uuid_text(tenant_id["_data_"]),
            "rates": state["rates"],
            "records": state["records"],
        },
    }


def public_fields(aggregate: Aggregate) -> dict[str, Any]:
    """An aggregate's own attributes (not the library's private ones), unredacted."""
    return {k: v for k, v in vars(aggregate).items() if not k.startswith("_")}


def state_line(aggregate: Aggregate) -> dict[str, Any]:
    """The replayed state of one aggregate, secrets redacted."""
    return {
        "kind": "state",
        "type": target_type(type(aggregate)),
        "id": str(aggregate.id),
        "version": aggregate.version,
        "created_at": iso(aggregate.created_on),
        "updated_at": iso(aggregate.modified_on),
        "data": json_safe(public_fields(aggregate)),
    }


class StateReplay:
    """Replays the events of many aggregates, given in global order, with their own ``mutate``.

    Nothing here knows an aggregate type: a new aggregate's state is replayed without a change.
    """

    def __init__(self) -> None:
        self.aggregates: dict[UUID, Aggregate] = {}

    def apply(self, event: Any) -> None:
        if issubclass(aggregate_class(type(event)), NO_STATE):
            return
        current = self.aggregates.get(event.originator_id)
        self.aggregates[event.originator_id] = event.mutate(current)

    def lines(self) -> Iterable[dict[str, Any]]:
        """The state of every aggregate, ordered by type, then creation, then id."""
        ordered = sorted(
            self.aggregates.values(),
            key=lambda a: (target_type(type(a)), a.created_on, str(a.id)),
        )
        return (state_line(a) for a in ordered)


def state_at(events: Iterable[Any], as_of: datetime | None) -> Aggregate | None:
    """One aggregate as it was at ``as_of`` (its latest state if ``None``), from its events.

    Stops at the first event after ``as_of``: versions must follow one another.
    """
    aggregate = None
    for event in events:
        if as_of is not None and event.timestamp > as_of:
            break
        aggregate = event.mutate(aggregate)
    return aggregate
