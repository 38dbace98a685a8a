"""Use cases on webhooks: register, delete, and what the delivery worker needs to sign."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from uuid import UUID

from application.auth import Principal
from application.ports import SecretBox
from application.store import EventStore
from application.tenants import tenant_for
from domain.tenant import Tenant
from domain.webhook import SECRET_PREFIX, Webhook


@dataclass(frozen=True)
class DeliveryTarget:
    """Where a delivery goes and the secret it is signed with (kept in memory only)."""

    url: str
    secret: str


class Webhooks:
    def __init__(self, store: EventStore, secret_box: SecretBox) -> None:
        self.store = store
        self.secret_box = secret_box

    def create_webhook(
        self,
        principal: Principal,
        tenant_id: UUID | None,
        url: str,
        events: list[str],
        description: str | None = None,
    ) -> tuple[UUID, str]:
        """Register a webhook; returns its id and the signing secret, shown this once."""
        tenant = tenant_for(self.store, principal, principal.owning_tenant(tenant_id))
        tenant.check_active()
        secret = SECRET_PREFIX + secrets.token_hex(24)
        webhook = Webhook.register(
            tenant_id=tenant.id,
            url=url,
            events=events,
            description=description,
            secret_ciphertext=self.secret_box.encrypt(tenant.wrapped_data_key, secret),
            actor=principal.actor,
        )
        self.store.commit(webhook, shown_once=secret)
        return webhook.id, secret

    def get_webhook_for(self, principal: Principal, webhook_id: UUID) -> Webhook:
        """A live webhook of the caller's tenant; a deleted one is gone (404)."""
        return self.store.load_owned(principal, Webhook, webhook_id, "webhook")

    def delete_webhook(self, principal: Principal, webhook_id: UUID) -> None:
        webhook = self.get_webhook_for(principal, webhook_id)
        webhook.delete(actor=principal.actor)
        self.store.commit(webhook)

    def delivery_target(self, webhook_id: UUID) -> DeliveryTarget | None:
        """URL and plaintext secret of a webhook, for signing; ``None`` if it can't be had.

        A deleted webhook still gets the deliveries owed for events that happened before it
        was deleted (an offboarding deletes webhooks in the same write as ``tenant.offboarded``).
        """
        webhook = self.store.find(Webhook, webhook_id)
        tenant = self.store.find(Tenant, webhook.tenant_id) if webhook else None
        if webhook is None or tenant is None:
            return None
        try:
            secret = self.secret_box.decrypt(tenant.wrapped_data_key, webhook.secret_ciphertext)
        except Exception:  # the tenant's key is gone (crypto-shredded): nothing can be signed
            return None
        return DeliveryTarget(url=webhook.url, secret=secret)
