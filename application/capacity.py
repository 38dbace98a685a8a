"""Use cases on serving capacity: the live ``max_in_flight`` of every serving process."""

from __future__ import annotations

from application.auth import Principal
from application.store import EventStore, retried_on_conflict
from domain.capacity import Capacity, check_max_in_flight


class CapacityControl:
    """Sets the operator's capacity; ``default_max_in_flight`` applies until it is first set."""

    def __init__(self, store: EventStore, default_max_in_flight: int) -> None:
        self.store = store
        self.default_max_in_flight = check_max_in_flight(default_max_in_flight)

    @retried_on_conflict
    def set_max_in_flight(self, principal: Principal, max_in_flight: int) -> None:
        """Set it (admin). Two settings at once: the later one wins, as two PUTs in turn would,
        so a lost race is retried rather than answered 409."""
        principal.check_admin()
        capacity = self.store.find(Capacity, Capacity.create_id())
        if capacity is None:
            capacity = Capacity.configure(max_in_flight, actor=principal.actor)
        else:
            capacity.change(max_in_flight, actor=principal.actor)
        self.store.commit(capacity)

    def max_in_flight(self) -> int:
        """The value in force, from the event store (a process reads it once at start)."""
        capacity = self.store.find(Capacity, Capacity.create_id())
        return self.default_max_in_flight if capacity is None else capacity.max_in_flight
