"""Use cases on project configurations (seed 002), and how the gateway applies one."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from application.auth import Principal
from application.store import EventStore
from application.tenants import tenant_for
from domain.projectconfig import ProjectConfig


class ProjectConfigs:
    def __init__(self, store: EventStore) -> None:
        self.store = store

    def configure(
        self,
        principal: Principal,
        tenant_id: UUID,
        allow_overwrite: bool | None,
        changes: Mapping[str, object | None],
    ) -> UUID:
        """Set the tenant's project configuration: ``allow_overwrite`` (``None`` keeps it) and
        the settings named in ``changes`` (``None`` removes one; others are kept)."""
        principal.check_management()
        tenant = tenant_for(self.store, principal, tenant_id)
        tenant.check_active()
        config = self.store.find(ProjectConfig, ProjectConfig.create_id(tenant.id))
        if config is None:
            config = ProjectConfig.create(tenant.id, allow_overwrite, changes, principal.actor)
        else:
            config.update(allow_overwrite, changes, principal.actor)
        self.store.commit(config)  # two first configurations at once: one wins, the other 409
        return config.id


def apply_project_config(
    allow_overwrite: bool, settings: Mapping[str, Any], body: dict[str, Any]
) -> dict[str, Any]:
    """A request body with the project's settings applied (a new dict; ``body`` unchanged).

    With ``allow_overwrite`` false the project's settings replace the request's; with true the
    request's win and the project's fill the gaps. A project that fixes ``max_tokens`` also
    fixes the newer ``max_completion_tokens``, which would otherwise take precedence upstream.
    """
    if not settings:
        return body
    if allow_overwrite:
        merged = {**settings, **body}
        if "max_completion_tokens" in body and "max_tokens" not in body:
            merged.pop("max_tokens", None)  # the request's own limit stands
        return merged
    merged = {**body, **settings}
    if "max_tokens" in settings:
        merged.pop("max_completion_tokens", None)
    return merged
