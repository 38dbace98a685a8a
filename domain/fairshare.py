"""The FairshareGroup aggregate: tenants grouped under one weight for fair-share admission."""

from __future__ import annotations

from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.base import Actor, name_id
from domain.tenant import GROUP, check_weight


def check_group_name(name: object) -> str:
    """A group's name, shaped as a tenant's ``group`` field names it (case counts)."""
    return GROUP.check("name", name)


class FairshareGroup(Aggregate):
    """A fair-share group (seed 004): admission shares capacity between groups by their weight,
    then between the group's tenants by theirs. Its id derives from its name, which is unique.
    """

    @staticmethod
    def create_id(name: str) -> UUID:
        return name_id("fairshare-group", name)

    class Created(Aggregate.Created):
        """A group was created with its weight."""

        name: str
        weight: int
        actor: Actor

    @event(Created)
    def __init__(self, name: str, weight: int, actor: Actor) -> None:
        self.name = name
        self.weight = weight

    @classmethod
    def create(cls, name: str, weight: int, actor: Actor) -> FairshareGroup:
        checked = check_group_name(name)
        return cls._create(
            cls.Created,
            id=cls.create_id(checked),
            name=checked,
            weight=check_weight(weight),
            actor=actor,
        )

    def change_weight(self, weight: int, actor: Actor) -> None:
        self._weight_changed(weight=check_weight(weight), actor=actor)

    @event("WeightChanged")
    def _weight_changed(self, weight: int, actor: Actor) -> None:
        self.weight = weight
