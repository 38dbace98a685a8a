"""Unique names through index aggregates (``NameIndex``), claimed in the write they name."""

from __future__ import annotations

from uuid import UUID

from eventsourcing.domain import Aggregate

from application.errors import ConcurrentModificationError
from application.store import EventStore
from domain.base import Actor, NameTakenError
from domain.index import NameIndex


def claim_name(store: EventStore, kind: str, key: str, owner_id: UUID, actor: Actor) -> NameIndex:
    """The index entry of ``key``, claimed for ``owner_id`` (``NameTakenError`` if held)."""
    index = store.find(NameIndex, NameIndex.create_id(kind, key))
    if index is None:
        return NameIndex(kind=kind, key=key, owner_id=owner_id, actor=actor)
    index.claim(owner_id, actor=actor)
    return index


def commit_claim(
    store: EventStore,
    aggregate: Aggregate,
    index: NameIndex,
    taken: str,
    shown_once: str | None = None,
) -> None:
    """Save an aggregate with its name's claim; a lost race for the name is ``taken``."""
    try:
        store.commit(aggregate, index, shown_once=shown_once)
    except ConcurrentModificationError:
        # Two requests raced for one name: the index aggregate let exactly one win.
        raise NameTakenError(taken) from None
