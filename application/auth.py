"""Who is calling, and what that caller may touch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from uuid import UUID

from application.errors import ForbiddenError, NotFoundError
from domain.base import Actor, InvalidValueError

PrincipalKind = Literal["admin", "management", "router"]


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: the operator (admin), one key of one tenant, or one user of
    one tenant (``user_id``; a user acts with its tenant's management authority)."""

    kind: PrincipalKind
    actor: Actor
    tenant_id: UUID | None = None
    key_id: UUID | None = None
    user_id: UUID | None = None

    def __post_init__(self) -> None:
        # A tenant-less key would otherwise read as "every tenant" in tenant_filter().
        if self.kind != "admin" and self.tenant_id is None:
            raise ValueError("a key principal must belong to a tenant")

    @property
    def is_admin(self) -> bool:
        return self.kind == "admin"

    def tenant_filter(self) -> UUID | None:
        """The tenant a query must be limited to (``None``: every tenant, for the admin)."""
        return None if self.is_admin else self.tenant_id

    def check_management(self) -> None:
        if self.kind == "router":
            raise ForbiddenError("router keys can't be used on management routes")

    def check_admin(self) -> None:
        if not self.is_admin:
            raise ForbiddenError("only the operator's admin token may do this")

    def check_tenant(self, tenant_id: UUID, kind: str, ident: UUID | str) -> None:
        """Another tenant's resource is not found, never forbidden: it must not leak."""
        if not self.is_admin and tenant_id != self.tenant_id:
            raise NotFoundError(kind, ident)

    def owning_tenant(self, tenant_id: UUID | None) -> UUID:
        """The tenant a new resource belongs to: named by the admin, implied by a key."""
        if self.is_admin:
            if tenant_id is None:
                raise InvalidValueError("tenant_id", "tenant_id is required with the admin token")
            return tenant_id
        if tenant_id is not None and tenant_id != self.tenant_id:
            raise NotFoundError("tenant", tenant_id)
        return self.tenant_id
