"""Read models that list a tenant's live aggregates of one owned kind (see ``domain.owned``).

Offboarding (and budget evaluation) ask the tenant directory for these ids by kind name; a read
model answers for its kind by being an ``OwnedListing``, nothing else lists it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.domain import Aggregate
from psycopg import Cursor

from domain.owned import owned_kind
from projections.engine.base import Projection


class OwnedListing(Projection):
    """A read model that lists the live aggregates of one kind a tenant owns."""

    lists: ClassVar[type[Aggregate]]  # the aggregate class of the kind (an entry of OWNED)
    # The ids of a tenant's live ones (``{s}``: the schema; the parameter: the tenant's id).
    live_ids_sql: ClassVar[str]

    def live_ids(self, curs: Cursor[Any], tenant_id: UUID) -> list[UUID]:
        rows = curs.execute(self.live_ids_sql.format(s=self.schema()), (tenant_id,)).fetchall()
        return [r["id"] for r in rows]


class OwnedListings:
    """Which read model lists each owned kind, found among the read models kept."""

    def __init__(self, projections: Iterable[Projection]) -> None:
        self.by_kind: dict[str, OwnedListing] = {}
        for p in projections:
            if isinstance(p, OwnedListing):
                kind = owned_kind(p.lists)
                if kind is None:
                    raise ValueError(f"{p.name} lists {p.lists.__name__}, not in domain.owned")
                self.by_kind[kind.name] = p

    @property
    def read_models(self) -> list[str]:
        """The names of the listing read models (to wait for before asking them)."""
        return [p.name for p in self.by_kind.values()]

    def owned_ids(self, curs: Cursor[Any], tenant_id: UUID) -> dict[str, list[UUID]]:
        """The ids of the tenant's live aggregates, by kind name (``{"key": [...], ...}``)."""
        return {kind: p.live_ids(curs, tenant_id) for kind, p in self.by_kind.items()}
