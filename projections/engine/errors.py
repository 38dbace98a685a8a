"""What goes wrong applying events: a projection's failed batch, and the event it cannot apply.

Its own module, below ``batch`` and ``stalls``, so that both can name them without importing
each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Stall:
    """A read model that cannot apply the event at ``position`` (its notification id)."""

    name: str
    position: int
    topic: str
    error: str
    cause: BaseException | None = field(default=None, compare=False, repr=False)

    def describe(self) -> str:
        return f"cannot apply event {self.position} ({self.topic}): {self.error}"


class ProjectionFailedError(Exception):
    """A projection's handler failed; its batch rolled back (the cause is chained).

    ``stall`` names the event it cannot apply, where that event was found.
    """

    def __init__(self, name: str, schema: str, stall: Stall | None = None) -> None:
        if stall is None:
            super().__init__(f"projection {name} failed in schema {schema}")
        else:
            super().__init__(f"projection {name} {stall.describe()}")
        self.name = name
        self.schema = schema
        self.stall = stall
