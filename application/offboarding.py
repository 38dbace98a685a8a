"""Offboarding: a tenant and everything it owns, ended in one write."""

from __future__ import annotations

from uuid import UUID

from eventsourcing.domain import Aggregate

from application.auth import Principal
from application.instances import Instances
from application.ports import TenantDirectory
from application.store import EventStore, retried_on_conflict
from domain.instance import Instance
from domain.owned import ENDED_AT_OFFBOARDING
from domain.tenant import Tenant


class Offboarding:
    """``directory`` finds what the tenant owns; ``instances`` gives its GPUs back."""

    def __init__(self, store: EventStore, directory: TenantDirectory, instances: Instances) -> None:
        self.store = store
        self.directory = directory
        self.instances = instances

    @retried_on_conflict
    def offboard_tenant(self, principal: Principal, tenant_id: UUID) -> None:
        """Destroy the tenant's instances, delete its keys, budgets, webhooks and MCP servers
        (every kind that ``domain.owned`` says offboarding ends), mark it offboarded.

        Everything is saved in one atomic write: the tenant is never half offboarded.
        Its history stays in the event store, so audit and billing remain readable. A write
        that lost a race (the provisioning job saving an instance whose GPU was just released
        here as failed, say) is made again from a fresh load.
        """
        principal.check_admin()
        tenant = self.store.load(Tenant, tenant_id, "tenant")
        tenant.offboard(actor=principal.actor)
        owned = self.directory.owned_ids(tenant_id)
        ended: list[Aggregate] = []
        for kind in ENDED_AT_OFFBOARDING:
            for aggregate_id in owned.get(kind.name, []):
                aggregate = self.store.find(kind.aggregate, aggregate_id)
                if aggregate is not None and kind.end_live(aggregate, principal.actor):
                    ended.append(aggregate)
        # GPUs go back first: if a provider fails, nothing is recorded and a retry is safe
        # (a release is idempotent).
        self.instances.release_gpus([a for a in ended if isinstance(a, Instance)])
        # In the registry's order: webhooks last, they are owed the events before their deletion.
        self.store.commit(tenant, *ended)
