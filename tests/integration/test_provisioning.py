"""Provisioning steps against the event store and the simulated provider's own table."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest

from application.auth import Principal
from application.errors import ConcurrentModificationError, ProviderError
from application.ports import DeploySpec
from domain.base import Actor

ADMIN = Principal(kind="admin", actor=Actor(id="admin", ip=None))


class DestroyedWhileAllocating:
    """The simulated provider, with the tenant destroying the instance mid-allocation."""

    def __init__(self, container: Any) -> None:
        self.container = container
        self.real = container.provider

    def allocate(self, spec: DeploySpec) -> None:
        self.container.instances.destroy_instance(ADMIN, spec.instance_id)
        self.real.allocate(spec)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def deploy(container: Any, tenant_id: str) -> UUID:
    return container.instances.deploy_instance(
        ADMIN, UUID(tenant_id), "llama-3.1-8b", "EU", "simulated", "text"
    )


def test_an_instance_destroyed_during_its_allocation_gets_its_gpu_released(container, tenant):
    instance_id = deploy(container, tenant.id)
    registry = container.providers
    registry.named["simulated"] = DestroyedWhileAllocating(container)
    try:
        with pytest.raises(ConcurrentModificationError):
            container.provisioning.advance_instance(instance_id)
    finally:
        del registry.named["simulated"]
    assert container.provider.status(instance_id).state == "released"
    assert container.provisioning.advance_instance(instance_id) == "destroyed"


def test_a_pending_instance_is_allocated_and_deploying_after_one_step(container, tenant):
    instance_id = deploy(container, tenant.id)

    assert container.provisioning.advance_instance(instance_id) == "deploying"
    assert container.provider.status(instance_id).state in ("allocating", "running")


def test_a_step_leaves_failed_and_destroyed_instances_alone(container, tenant):
    instance_id = deploy(container, tenant.id)
    container.instances.transition_instance(instance_id, "failed", Actor.system(), reason="x")

    assert container.provisioning.advance_instance(instance_id) == "failed"
    assert container.provider.status(instance_id).state == "unknown"


class Unreachable:
    """A provider that can't be reached when asked for a status."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def status(self, instance_id: UUID) -> Any:
        raise ConnectionError("connection refused")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_a_provider_that_cannot_be_reached_is_a_provider_error_and_changes_nothing(
    container, tenant
):
    instance_id = deploy(container, tenant.id)
    container.provisioning.advance_instance(instance_id)
    registry = container.providers
    registry.named["simulated"] = Unreachable(container.provider)
    try:
        with pytest.raises(ProviderError, match="connection refused"):
            container.provisioning.refresh_instance(ADMIN, instance_id)
    finally:
        del registry.named["simulated"]
    assert container.provisioning.advance_instance(instance_id) in ("deploying", "running")
