"""Use cases on fair-share groups (seed 004): create one, change its weight."""

from __future__ import annotations

from uuid import UUID

from application.auth import Principal
from application.errors import ConcurrentModificationError, NotFoundError
from application.store import EventStore
from domain.base import NameTakenError
from domain.fairshare import FairshareGroup

KIND = "fairshare group"


def require_group(store: EventStore, name: str) -> FairshareGroup:
    """The group named ``name`` (a checked name); a tenant can't join one that doesn't exist."""
    group = store.find(FairshareGroup, FairshareGroup.create_id(name))
    if group is None:
        raise NotFoundError(KIND, name)
    return group


class Fairshare:
    def __init__(self, store: EventStore) -> None:
        self.store = store

    def create_group(self, principal: Principal, name: str, weight: int = 100) -> UUID:
        """Create a group (admin); names are unique, since a tenant's ``group`` names one."""
        principal.check_admin()
        group = FairshareGroup.create(name, weight, actor=principal.actor)
        taken = f"a fair-share group named {group.name!r} already exists"
        if self.store.find(FairshareGroup, group.id) is not None:
            raise NameTakenError(taken)
        try:
            self.store.commit(group)
        except ConcurrentModificationError:  # created by another request a moment ago
            raise NameTakenError(taken) from None
        return group.id

    def change_group_weight(self, principal: Principal, name: str, weight: int) -> None:
        principal.check_admin()
        group = require_group(self.store, name)  # a malformed name names no group: 404
        group.change_weight(weight, actor=principal.actor)
        self.store.commit(group)
