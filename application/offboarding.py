"""Offboarding: a tenant and everything it owns, ended in one write."""

from __future__ import annotations

from uuid import UUID

from eventsourcing.domain import Aggregate

from application.auth import Principal
from application.errors import ConcurrentModificationError
from application.instances import Instances
from application.ports import TenantDirectory
from application.store import EventStore
from domain.instance import Instance
from domain.owned import ENDED_AT_OFFBOARDING
from domain.tenant import Tenant

# A save that lost a race with another writer (the provisioning job, which marks an instance
# whose GPU was just released here as failed) is made again this often, from a fresh load.
ATTEMPTS = 3


class Offboarding:
    """``directory`` finds what the tenant owns; ``instances`` gives its GPUs back."""

    def __init__(self, store: EventStore, directory: TenantDirectory, instances: Instances) -> None:
        self.store = store
        self.directory = directory
        self.instances = instances

    def offboard_tenant(self, principal: Principal, tenant_id: UUID) -> None:
        """Destroy the tenant's instances, delete its keys, budgets, webhooks and MCP servers
        (every kind that ``domain.owned`` says offboarding ends), mark it offboarded.

        Everything is saved in one atomic write: the tenant is never half offboarded.
        Its history stays in the event store, so audit and billing remain readable. A write
        that lost a race (an instance changed meanwhile) is made again from a fresh load.
        """
        principal.check_admin()
        for attempt in range(ATTEMPTS):
            try:
                return self._offboard(principal, tenant_id)
            except ConcurrentModificationError:
                if attempt == ATTEMPTS - 1:
                    raise

    def _offboard(self, principal: Principal, tenant_id: UUID) -> None:
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
