"""Offboarding: a tenant and everything it owns, ended in one write."""

from __future__ import annotations

from uuid import UUID

from application.auth import Principal
from application.instances import Instances
from application.ports import TenantDirectory
from application.store import EventStore
from domain.apikey import ApiKey
from domain.budget import Budget
from domain.instance import Instance
from domain.tenant import Tenant
from domain.webhook import Webhook


class Offboarding:
    """``directory`` finds what the tenant owns; ``instances`` gives its GPUs back."""

    def __init__(self, store: EventStore, directory: TenantDirectory, instances: Instances) -> None:
        self.store = store
        self.directory = directory
        self.instances = instances

    def offboard_tenant(self, principal: Principal, tenant_id: UUID) -> None:
        """Destroy the tenant's instances, delete its keys and budgets, mark it offboarded.

        Everything is saved in one atomic write: the tenant is never half offboarded.
        Its history stays in the event store, so audit and billing remain readable.
        """
        principal.check_admin()
        store = self.store
        tenant = store.load(Tenant, tenant_id, "tenant")
        tenant.offboard(actor=principal.actor)
        changed: list[object] = [tenant]
        owned = self.directory.owned_ids(tenant_id)
        for budget_id in owned.get("budgets", []):
            budget = store.find(Budget, budget_id)  # type: ignore[arg-type]
            if budget and not budget.deleted:
                budget.delete(actor=principal.actor)
                changed.append(budget)
        for key_id in owned.get("keys", []):
            key = store.find(ApiKey, key_id)  # type: ignore[arg-type]
            if key and not key.deleted:
                key.delete(actor=principal.actor)
                changed.append(key)
        instances = []
        for instance_id in owned.get("instances", []):
            instance = store.find(Instance, instance_id)  # type: ignore[arg-type]
            if instance and not instance.is_destroyed:
                instance.destroy(actor=principal.actor)
                instances.append(instance)
        # GPUs go back first: if a provider fails, nothing is recorded and a retry is safe.
        self.instances.release_gpus(instances)
        # Webhooks go last in the write: they are still owed the events before their deletion.
        webhooks = [store.find(Webhook, w) for w in owned.get("webhooks", [])]  # type: ignore[arg-type]
        webhooks = [w for w in webhooks if w and not w.deleted]
        for webhook in webhooks:
            webhook.delete(actor=principal.actor)
        store.commit(*changed, *instances, *webhooks)  # type: ignore[arg-type]
