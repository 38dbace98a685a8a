"""BYOK: a tenant's own upstream provider keys, kept as logical instances."""

from __future__ import annotations

from uuid import UUID

from application.auth import Principal
from application.ports import SecretBox
from application.store import EventStore
from application.tenants import tenant_for
from domain.instance import Instance, check_external_key


class Upstreams:
    def __init__(self, store: EventStore, secret_box: SecretBox) -> None:
        self.store = store
        self.secret_box = secret_box

    def attach_upstream(
        self,
        principal: Principal,
        tenant_id: UUID | None,
        name: str,
        upstream: str,
        external_key: str,
    ) -> UUID:
        """BYOK: the tenant's own upstream key, encrypted before it enters the event."""
        tenant = tenant_for(self.store, principal, principal.owning_tenant(tenant_id))
        tenant.check_active()
        key = check_external_key(external_key)
        instance = Instance.attach_upstream(
            tenant_id=tenant.id,
            name=name,
            upstream=upstream,
            external_key_ciphertext=self.secret_box.encrypt(tenant.wrapped_data_key, key),
            external_key_last4=key[-4:],
            actor=principal.actor,
        )
        self.store.commit(instance)
        return instance.id

    def get_upstream_for(self, principal: Principal, instance_id: UUID) -> Instance:
        return self.store.load_owned(
            principal, Instance, instance_id, "byok upstream", gone=lambda i: not i.is_byok
        )

    def detach_upstream(self, principal: Principal, instance_id: UUID) -> None:
        instance = self.get_upstream_for(principal, instance_id)
        instance.destroy(actor=principal.actor)
        self.store.commit(instance)
