"""Use cases on GPU model instances."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from application.auth import Principal
from application.errors import ConcurrentModificationError, ProviderError
from application.ports import Providers, SecretBox
from application.store import EventStore, retried_on_conflict
from application.tenants import tenant_for
from domain.base import Actor, InvalidValueError
from domain.index import NameIndex
from domain.instance import INSTANCE_KEY_PREFIX, Instance, check_slug
from domain.pricing import GpuRate, Model
from domain.tenant import Tenant

ON_DEMAND = "on-demand"  # the NameIndex kind of "the instance booted on demand for a model"
BOOTING = ("pending", "deploying", "running")


@dataclass(frozen=True)
class Booting:
    """An instance booted on demand: by this call (``started``) or an earlier one."""

    instance_id: UUID
    requested_at: datetime
    started: bool


class Instances:
    """GPU model instances; ``providers`` allocate and release their GPUs."""

    def __init__(self, store: EventStore, secret_box: SecretBox, providers: Providers) -> None:
        self.store = store
        self.secret_box = secret_box
        self.providers = providers

    def deploy_instance(
        self,
        principal: Principal,
        tenant_id: UUID | None,
        model_id: str,
        region: str,
        provider: str,
        instance_type: str,
    ) -> UUID:
        """Ask for a model to be deployed; the instance starts ``pending``."""
        tenant = tenant_for(self.store, principal, principal.owning_tenant(tenant_id))
        instance = self._deployment(
            tenant, model_id, region, provider, instance_type, principal.actor
        )
        self.store.commit(instance)
        return instance.id

    def _deployment(
        self,
        tenant: Tenant,
        model_id: str,
        region: str,
        provider: str,
        instance_type: str,
        actor: Actor,
    ) -> Instance:
        """A new instance of the model for the tenant (``pending``), not yet saved."""
        tenant.check_active()
        # Checked before they are looked up, so that a refusal never repeats a huge value.
        model_id, region, instance_type = (
            check_slug(field, value)
            for field, value in (
                ("model_id", model_id),
                ("region", region),
                ("instance_type", instance_type),
            )
        )
        model = self.store.find(Model, Model.create_id(model_id))
        if model is None or model.deleted:
            raise InvalidValueError("model_id", f"model {model_id!r} is not in the catalog")
        if not model.serveable:
            raise InvalidValueError("model_id", f"model {model_id!r} can't be served on our GPUs")
        rate = self.store.find(GpuRate, GpuRate.create_id(instance_type, region))
        if rate is None:
            raise InvalidValueError(
                "instance_type",
                f"no GPU rate for instance type {instance_type!r} in region {region!r}",
            )
        instance_key = INSTANCE_KEY_PREFIX + secrets.token_urlsafe(32)
        return Instance.request_deploy(
            tenant_id=tenant.id,
            model_id=model_id,
            region=region,
            provider=provider,
            instance_type=instance_type,
            # Seed 000 returns the instance key on demand, so it is kept encrypted, not hashed.
            api_key_ciphertext=self.secret_box.encrypt(tenant.wrapped_data_key, instance_key),
            api_key_prefix=instance_key[:16],
            hourly_rate_eur=rate.eur_per_hour,
            actor=actor,
        )

    def boot_on_demand(
        self,
        tenant_id: UUID,
        model_id: str,
        region: str,
        provider: str,
        instance_type: str,
        actor: Actor,
    ) -> Booting | None:
        """Deploy the model for a tenant with on-demand boot on, once (``None``: it is off).

        Idempotent: while an instance booted on demand for this model is pending, deploying
        or running, every call answers that one. Concurrent calls, in any process, race for
        one ``NameIndex`` entry (tenant and model): one deploys, the others answer its
        instance.
        """
        for _attempt in range(3):
            tenant = self.store.find(Tenant, tenant_id)
            if tenant is None or tenant.offboarded or not tenant.on_demand_boot:
                return None
            key = f"{tenant_id}:{model_id}"
            index = self.store.find(NameIndex, NameIndex.create_id(ON_DEMAND, key))
            if index is not None and index.owner_id is not None:
                booted = self.store.find(Instance, index.owner_id)
                if booted is not None and booted.status in BOOTING:
                    return Booting(booted.id, booted.created_on, started=False)
                index.release(index.owner_id, actor=actor)
            instance = self._deployment(tenant, model_id, region, provider, instance_type, actor)
            if index is None:
                index = NameIndex(kind=ON_DEMAND, key=key, owner_id=instance.id, actor=actor)
            else:
                index.claim(instance.id, actor=actor)
            try:
                self.store.commit(instance, index)
            except ConcurrentModificationError:
                continue  # another request booted it first: answer its instance
            return Booting(instance.id, instance.created_on, started=True)
        raise ConcurrentModificationError("on-demand boot conflicted repeatedly; retry")

    def get_instance_for(self, principal: Principal, instance_id: UUID) -> Instance:
        # A destroyed instance stays readable: it is history and billing.
        return self.store.load_owned(
            principal, Instance, instance_id, "instance", gone=lambda i: False
        )

    def reveal_instance_key(self, principal: Principal, instance_id: UUID) -> str:
        instance = self.get_instance_for(principal, instance_id)
        instance.check_deployed()  # a BYOK upstream's key is never given back
        tenant = self.store.load(Tenant, instance.tenant_id, "tenant")
        return self.secret_box.decrypt(tenant.wrapped_data_key, instance.api_key_ciphertext)

    def transition_instance(
        self,
        instance_id: UUID,
        status: str,
        actor: Actor,
        reason: str | None = None,
        endpoint_url: str | None = None,
    ) -> None:
        """Record a lifecycle step reported by a provider (or the provisioning jobs)."""
        instance = self.store.load(Instance, instance_id, "instance")
        instance.transition(status, actor=actor, reason=reason, endpoint_url=endpoint_url)
        self.store.commit(instance)

    @retried_on_conflict
    def destroy_instance(self, principal: Principal, instance_id: UUID) -> None:
        instance = self.get_instance_for(principal, instance_id)
        instance.destroy(actor=principal.actor)
        # Release before recording: a provider error leaves the instance as it was, retryable.
        # Between the two, the provisioning job may see the GPU gone and save the instance as
        # failed: the destroy is then made again on that (a release is idempotent), instead of
        # answering 409 for the platform's own write.
        self.release_gpus([instance])
        self.store.commit(instance)

    def release_gpus(self, instances: list[Instance]) -> None:
        for instance in instances:
            if instance.is_byok:
                continue
            try:
                self.providers.provider_for(instance.provider).release(instance.id)
            except Exception as exc:  # noqa: BLE001 - said to the caller, who may retry
                raise ProviderError(
                    f"provider could not release instance {instance.id}: {exc}"
                ) from exc
