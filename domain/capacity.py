"""The Capacity aggregate: how many upstream requests each serving process admits at once."""

from __future__ import annotations

from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.base import Actor, name_id
from domain.values import BoundedInt

# Per process: a few thousand open upstream requests is already far past one event loop's reach.
MAX_IN_FLIGHT = BoundedInt(
    1, 1_000_000, "{field} must be a whole number of requests between {minimum} and {maximum}"
)


def check_max_in_flight(value: object) -> int:
    return MAX_IN_FLIGHT.check("max_in_flight", value)


class Capacity(Aggregate):
    """The operator's one capacity setting (seed 004's ``max_in_flight`` per pod), changed live.

    Until it is first set, every process uses the default of its settings
    (``HOSTPLANE_MAX_IN_FLIGHT``); once set, the recorded value applies everywhere.
    """

    @staticmethod
    def create_id() -> UUID:
        return name_id("capacity")

    class Configured(Aggregate.Created):
        """The capacity was set for the first time."""

        max_in_flight: int
        actor: Actor

    @event(Configured)
    def __init__(self, max_in_flight: int, actor: Actor) -> None:
        self.max_in_flight = max_in_flight

    @classmethod
    def configure(cls, max_in_flight: int, actor: Actor) -> Capacity:
        return cls._create(
            cls.Configured,
            id=cls.create_id(),
            max_in_flight=check_max_in_flight(max_in_flight),
            actor=actor,
        )

    def change(self, max_in_flight: int, actor: Actor) -> None:
        """Set a new ``max_in_flight``; the same value again records nothing."""
        checked = check_max_in_flight(max_in_flight)
        if checked != self.max_in_flight:
            self._max_in_flight_changed(max_in_flight=checked, actor=actor)

    @event("MaxInFlightChanged")
    def _max_in_flight_changed(self, max_in_flight: int, actor: Actor) -> None:
        self.max_in_flight = max_in_flight
