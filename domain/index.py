"""Index aggregates: uniqueness of natural keys without asking a read model."""

from __future__ import annotations

from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.base import Actor, NameTakenError, name_id


class NameIndex(Aggregate):
    """Claims a unique name (a tenant name, a key name within a tenant) for one owner."""

    @staticmethod
    def create_id(kind: str, key: str) -> UUID:
        """The index entry's id is derived from the natural key (the library calls this)."""
        return name_id("name-index", kind, key)

    @event("Claimed")
    def __init__(self, kind: str, key: str, owner_id: UUID, actor: Actor) -> None:
        self.kind = kind
        self.key = key
        self.owner_id: UUID | None = owner_id

    def check_free(self) -> None:
        if self.owner_id is not None:
            raise NameTakenError(f"{self.kind} name {self.key!r} is already in use")

    def claim(self, owner_id: UUID, actor: Actor) -> None:
        self.check_free()
        self._reclaimed(owner_id=owner_id, actor=actor)

    @event("Reclaimed")
    def _reclaimed(self, owner_id: UUID, actor: Actor) -> None:
        self.owner_id = owner_id

    def release(self, owner_id: UUID, actor: Actor) -> None:
        if self.owner_id == owner_id:
            self._released(actor=actor)

    @event("Released")
    def _released(self, actor: Actor) -> None:
        self.owner_id = None
