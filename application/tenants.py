"""Use cases on tenants."""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID

from application.auth import Principal
from application.fairshare import require_group
from application.names import claim_name, commit_claim
from application.ports import SecretBox
from application.store import EventStore
from domain.tenant import Tenant, check_name


def tenant_for(store: EventStore, principal: Principal, tenant_id: UUID) -> Tenant:
    """The tenant, if the caller may see it (another tenant's is "not found")."""
    principal.check_tenant(tenant_id, "tenant", tenant_id)
    return store.load(Tenant, tenant_id, "tenant")


class Tenants:
    def __init__(self, store: EventStore, secret_box: SecretBox) -> None:
        self.store = store
        self.secret_box = secret_box

    def create_tenant(
        self,
        principal: Principal,
        name: str,
        weight: int = 100,
        tokens_per_minute: int | None = None,
        group: str | None = None,
        on_demand_boot: bool = False,
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
        if on_demand_boot is not False:
            tenant.set_on_demand_boot(on_demand_boot, actor=principal.actor)
        if tenant.group is not None:
            require_group(self.store, tenant.group)
        index = claim_name(
            self.store, "tenant", check_name(name).lower(), tenant.id, principal.actor
        )
        commit_claim(self.store, tenant, index, f"tenant name {name!r} is already in use")
        return tenant.id

    def get_tenant_for(self, principal: Principal, tenant_id: UUID) -> Tenant:
        return tenant_for(self.store, principal, tenant_id)

    def change_tenant_weight(self, principal: Principal, tenant_id: UUID, weight: int) -> None:
        principal.check_admin()
        tenant = self.store.load(Tenant, tenant_id, "tenant")
        tenant.change_weight(weight, actor=principal.actor)
        self.store.commit(tenant)

    def change_tenant_quota(
        self, principal: Principal, tenant_id: UUID, tokens_per_minute: int | None
    ) -> None:
        principal.check_admin()
        tenant = self.store.load(Tenant, tenant_id, "tenant")
        tenant.change_quota(tokens_per_minute, actor=principal.actor)
        self.store.commit(tenant)

    def assign_tenant_group(self, principal: Principal, tenant_id: UUID, group: str | None) -> None:
        """Assign a fair-share group (admin); one that doesn't exist is 404, ``None`` leaves."""
        principal.check_admin()
        tenant = self.store.load(Tenant, tenant_id, "tenant")
        tenant.assign_group(group, actor=principal.actor)  # checked first: 409, 400, then 404
        if tenant.group is not None:
            require_group(self.store, tenant.group)
        self.store.commit(tenant)

    def set_on_demand_boot(self, principal: Principal, tenant_id: UUID, enabled: bool) -> None:
        """Turn on-demand boot on or off: the admin, or the tenant's own management key (the
        GPU time it starts is the tenant's to pay)."""
        principal.check_management()
        tenant = tenant_for(self.store, principal, tenant_id)
        tenant.set_on_demand_boot(enabled, actor=principal.actor)
        self.store.commit(tenant)

    def add_credits(self, principal: Principal, tenant_id: UUID, amount_eur: Decimal) -> None:
        principal.check_admin()
        tenant = self.store.load(Tenant, tenant_id, "tenant")
        tenant.add_credits(amount_eur, actor=principal.actor)
        self.store.commit(tenant)
