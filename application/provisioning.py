"""Provisioning: instances driven through their lifecycle by a GPU provider.

The scheduled jobs call ``advance_instance`` for every instance that is on its way up or
running; the operational endpoints (refresh, retry, test, logs) call the same steps on demand.
Every decision is taken from the instance's events, so a restart resumes where it stopped.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from uuid import UUID

from application.auth import Principal
from application.errors import ConcurrentModificationError, ProviderError
from application.instances import Instances
from application.ports import ChatCheck, DeploySpec, EndpointProber, Provider, Providers, SecretBox
from application.store import EventStore
from domain.base import Actor, ConflictError
from domain.instance import Instance
from domain.tenant import Tenant

log = logging.getLogger(__name__)

PROVISIONER = Actor(id="system:provisioner", ip=None)
ACTIVE = ("pending", "deploying", "running")


class Provisioning:
    """``instances`` says which instance a caller may act on; ``providers`` run them, and
    ``prober`` tests their endpoints. A deploy still unfinished after ``deploy_timeout`` fails."""

    def __init__(
        self,
        store: EventStore,
        secret_box: SecretBox,
        instances: Instances,
        providers: Providers,
        prober: EndpointProber,
        deploy_timeout: timedelta = timedelta(minutes=15),
    ) -> None:
        self.store = store
        self.secret_box = secret_box
        self.instances = instances
        self.providers = providers
        self.prober = prober
        self.deploy_timeout = deploy_timeout

    def provider_of(self, instance: Instance) -> Provider:
        instance.check_deployed()
        return self.providers.provider_for(instance.provider)

    def _spec(self, instance: Instance) -> DeploySpec:
        tenant = self.store.load(Tenant, instance.tenant_id, "tenant")
        return DeploySpec(
            instance_id=instance.id,
            model_id=instance.model_id or "",
            region=instance.region or "",
            instance_type=instance.instance_type or "",
            api_key=self.secret_box.decrypt(tenant.wrapped_data_key, instance.api_key_ciphertext),
        )

    def advance_instance(self, instance_id: UUID, now: datetime | None = None) -> str:
        """Take one provisioning step for the instance; returns its status afterwards.

        pending → allocate at the provider → deploying; deploying → running (with the
        provider's endpoint) or failed (the provider's reason, or the deploy deadline);
        running → failed when the provider lost it. Other statuses are left alone.
        """
        instance = self.store.load(Instance, instance_id, "instance")
        if instance.is_byok or instance.status not in ACTIVE:
            return instance.status
        provider = self.provider_of(instance)
        now = now or datetime.now(UTC)
        if instance.status == "pending":
            try:
                provider.allocate(self._spec(instance))
            except Exception as exc:  # noqa: BLE001 - any provider failure fails the deploy
                instance.transition("failed", PROVISIONER, reason=f"allocation failed: {exc}")
            else:
                instance.transition("deploying", PROVISIONER)
        else:
            self._sync(instance, provider, now)
        if instance.pending_events:
            try:
                self.store.commit(instance)
            except ConcurrentModificationError:
                # Destroyed meanwhile? Then what was just allocated must not stay allocated.
                if self.store.load(Instance, instance_id, "instance").is_destroyed:
                    provider.release(instance_id)
                raise
        return instance.status

    def _sync(self, instance: Instance, provider: Provider, now: datetime) -> None:
        try:
            deployment = provider.status(instance.id)
        except Exception as exc:  # noqa: BLE001 - the provider is unreachable; nothing changes
            raise ProviderError(
                f"provider could not report on instance {instance.id}: {exc}"
            ) from exc
        if instance.status == "running":
            if deployment.state != "running":
                reason = deployment.reason or "the provider no longer runs this instance"
                instance.transition("failed", PROVISIONER, reason=reason)
            return
        if deployment.state == "running":
            instance.transition("running", PROVISIONER, endpoint_url=deployment.endpoint_url)
        elif deployment.state == "failed":
            instance.transition("failed", PROVISIONER, reason=deployment.reason or "deploy failed")
        elif now - instance.modified_on > self.deploy_timeout:
            # Nothing stays deploying forever: give the GPU back and say why.
            provider.release(instance.id)
            seconds = self.deploy_timeout.total_seconds()
            instance.transition(
                "failed", PROVISIONER, reason=f"deploy did not finish within {seconds:g} s"
            )
        elif deployment.state in ("unknown", "released"):
            # The provider lost the request (or never got it): ask again, it is idempotent.
            provider.allocate(self._spec(instance))

    def advance_quietly(self, instance_id: UUID) -> None:
        """``advance_instance`` for the scheduled jobs: a failure is logged, never raised."""
        try:
            self.advance_instance(instance_id)
        except ConcurrentModificationError:
            pass  # someone else (a refresh, a destroy) moved it first; next round sees it
        except Exception:
            log.exception("provisioning step failed for instance %s", instance_id)

    # -- operations on demand (seed 000's helpers) ---------------------------------------

    def refresh_instance(self, principal: Principal, instance_id: UUID) -> None:
        """Re-sync the instance's status from its provider now."""
        instance = self.instances.get_instance_for(principal, instance_id)
        instance.check_deployed()
        for _ in range(3):
            try:
                self.advance_instance(instance_id)
                return
            except ConcurrentModificationError:
                continue

    def retry_instance(self, principal: Principal, instance_id: UUID) -> None:
        """Deploy a failed instance again; it goes back to pending and up from there."""
        instance = self.instances.get_instance_for(principal, instance_id)
        instance.check_deployed()
        if instance.status != "failed":
            raise ConflictError(f"instance is {instance.status}; only a failed one is retried")
        instance.transition("pending", principal.actor, reason="retry requested")
        self.store.commit(instance)
        self.advance_quietly(instance_id)

    def test_instance(self, principal: Principal, instance_id: UUID) -> ChatCheck:
        """A health-check chat completion against the instance's endpoint, recorded."""
        instance = self.instances.get_instance_for(principal, instance_id)
        instance.check_deployed()
        if instance.status != "running" or not instance.endpoint_url:
            raise ConflictError(f"instance is {instance.status}; only a running one is tested")
        api_key = self._spec(instance).api_key
        check = self.prober.chat(instance.endpoint_url, api_key, instance.model_id or "")
        instance.record_check(
            check.ok, check.status_code, check.latency_ms, check.error, principal.actor
        )
        self.store.commit(instance)
        return check

    def instance_logs(
        self, principal: Principal, instance_id: UUID, limit: int
    ) -> list[dict[str, object]]:
        instance = self.instances.get_instance_for(principal, instance_id)
        return self.provider_of(instance).logs(instance.id, limit)
