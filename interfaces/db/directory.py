"""Ports of the application answered by read models, read through the read-your-writes gate."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from uuid import UUID

from interfaces.db.readgate import ReadGate
from projections.engine.base import Projection
from projections.readmodels.owned import OwnedListings
from projections.reports import billing


class ReadModelDirectory:
    """Implements the ``TenantDirectory`` port with the read models that list owned kinds."""

    def __init__(self, gate: ReadGate, projections: Iterable[Projection]) -> None:
        self.gate = gate
        self.listings = OwnedListings(projections)

    def owned_ids(self, tenant_id: UUID) -> dict[str, list[UUID]]:
        with self.gate.reading(*self.listings.read_models) as curs:
            return self.listings.owned_ids(curs, tenant_id)


class ReadModelSpend:
    """Implements the ``SpendReader`` port with the usage and costs read models."""

    def __init__(self, gate: ReadGate) -> None:
        self.gate = gate

    def spent(
        self, tenant_id: UUID, key_id: UUID | None, start: datetime, end: datetime | None
    ) -> Decimal:
        with self.gate.reading("usage", "costs") as curs:
            return billing.spent(curs, tenant_id, key_id, start, end, datetime.now(UTC))
