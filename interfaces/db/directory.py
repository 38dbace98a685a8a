"""Ports of the application answered by read models, read through the read-your-writes gate."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from uuid import UUID

from interfaces.db.readgate import ReadGate
from projections.readmodels import budgets, instances, keys, webhooks
from projections.reports import billing


class ReadModelDirectory:
    """Implements the ``TenantDirectory`` port with the listing read models."""

    def __init__(self, gate: ReadGate) -> None:
        self.gate = gate

    def owned_ids(self, tenant_id: object) -> dict[str, list[object]]:
        assert isinstance(tenant_id, UUID)
        with self.gate.reading("keys", "instances", "budgets", "webhooks") as curs:
            return {
                "keys": list(keys.live_key_ids(curs, tenant_id)),
                "instances": list(instances.live_instance_ids(curs, tenant_id)),
                "budgets": list(budgets.live_budget_ids(curs, tenant_id)),
                "webhooks": list(webhooks.live_webhook_ids(curs, tenant_id)),
            }


class ReadModelSpend:
    """Implements the ``SpendReader`` port with the usage and costs read models."""

    def __init__(self, gate: ReadGate) -> None:
        self.gate = gate

    def spent(
        self, tenant_id: UUID, key_id: UUID | None, start: datetime, end: datetime | None
    ) -> Decimal:
        with self.gate.reading("usage", "costs") as curs:
            return billing.spent(curs, tenant_id, key_id, start, end, datetime.now(UTC))
