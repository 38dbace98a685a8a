"""Use cases on tenants."""

from __future__ import annotations

from uuid import UUID

from application.auth import Principal
from application.errors import ConcurrentModificationError
from application.service import BaseService
from domain.base import NameTakenError
from domain.index import NameIndex
from domain.instance import Instance
from domain.owned import ENDED_AT_OFFBOARDING
from domain.tenant import Tenant, check_name


class TenantCommands(BaseService):
    def create_tenant(
        self,
        principal: Principal,
        name: str,
        weight: int = 100,
        tokens_per_minute: int | None = None,
        group: str | None = None,
    ) -> UUID:
        principal.check_admin()
        tenant = Tenant.register(
            name=name,
            weight=weight,
            tokens_per_minute=tokens_per_minute,
            group=group,
            wrapped_data_key=self.secret_box.new_wrapped_data_key(),
            actor=principal.actor,
        )
        index = self._claim_name("tenant", check_name(name).lower(), tenant.id, principal)
        self._commit_claim(tenant, index, f"tenant name {name!r} is already in use")
        return tenant.id

    def _claim_name(self, kind: str, key: str, owner_id: UUID, principal: Principal) -> NameIndex:
        index = self.find(NameIndex, NameIndex.create_id(kind, key))
        if index is None:
            return NameIndex(kind=kind, key=key, owner_id=owner_id, actor=principal.actor)
        index.claim(owner_id, actor=principal.actor)
        return index

    def _commit_claim(
        self, aggregate: object, index: NameIndex, taken: str, shown_once: str | None = None
    ) -> None:
        try:
            self.commit(aggregate, index, shown_once=shown_once)  # type: ignore[arg-type]
        except ConcurrentModificationError:
            # Two requests raced for one name: the index aggregate let exactly one win.
            raise NameTakenError(taken) from None

    def get_tenant_for(self, principal: Principal, tenant_id: UUID) -> Tenant:
        principal.check_tenant(tenant_id, "tenant", tenant_id)
        return self.load(Tenant, tenant_id, "tenant")

    def change_tenant_weight(self, principal: Principal, tenant_id: UUID, weight: int) -> None:
        principal.check_admin()
        tenant = self.load(Tenant, tenant_id, "tenant")
        tenant.change_weight(weight, actor=principal.actor)
        self.commit(tenant)

    def change_tenant_quota(
        self, principal: Principal, tenant_id: UUID, tokens_per_minute: int | None
    ) -> None:
        principal.check_admin()
        tenant = self.load(Tenant, tenant_id, "tenant")
        tenant.change_quota(tokens_per_minute, actor=principal.actor)
        self.commit(tenant)

    def assign_tenant_group(self, principal: Principal, tenant_id: UUID, group: str | None) -> None:
        principal.check_admin()
        tenant = self.load(Tenant, tenant_id, "tenant")
        tenant.assign_group(group, actor=principal.actor)
        self.commit(tenant)

    def offboard_tenant(self, principal: Principal, tenant_id: UUID) -> None:
        """Destroy the tenant's instances, delete its keys, budgets and webhooks (every kind
        that ``domain.owned`` says offboarding ends), mark it offboarded.

        Everything is saved in one atomic write: the tenant is never half offboarded.
        Its history stays in the event store, so audit and billing remain readable.
        """
        principal.check_admin()
        tenant = self.load(Tenant, tenant_id, "tenant")
        tenant.offboard(actor=principal.actor)
        owned = self.directory.owned_ids(tenant_id) if self.directory else {}
        ended = []
        for kind in ENDED_AT_OFFBOARDING:
            for aggregate_id in owned.get(kind.name, []):
                aggregate = self.find(kind.aggregate, aggregate_id)
                if aggregate is not None and kind.end_live(aggregate, principal.actor):
                    ended.append(aggregate)
        # GPUs go back first: if a provider fails, nothing is recorded and a retry is safe.
        self.release_gpus([a for a in ended if isinstance(a, Instance)])
        # In the registry's order: webhooks last, they are owed the events before their deletion.
        self.commit(tenant, *ended)

    def release_gpus(self, instances: list[Instance]) -> None:
        """Give destroyed instances' GPUs back to their providers (see InstanceCommands)."""
