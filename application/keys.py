"""Use cases on API keys."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from application.auth import Principal
from application.errors import ConcurrentModificationError, NotFoundError
from application.names import claim_name, commit_claim
from application.ports import Clock, TenantDirectory
from application.store import EventStore
from application.tenants import tenant_for
from domain.apikey import ApiKey, check_key_name
from domain.base import Actor, ConflictError, NameTakenError
from domain.budget import Budget
from domain.index import NameIndex


def key_name_key(tenant_id: UUID, name: str) -> str:
    """Key names are unique within a tenant, case-insensitively."""
    return f"{tenant_id}/{name.lower()}"


class SelfDeletionError(ConflictError):
    """A key can't delete the key that authenticates the request."""


class Keys:
    """API keys; ``directory`` finds a tenant's keys (a user's personal access tokens)."""

    def __init__(
        self, store: EventStore, clock: Clock, directory: TenantDirectory | None = None
    ) -> None:
        self.store = store
        self.clock = clock
        self.directory = directory

    def issue_key(
        self,
        principal: Principal,
        tenant_id: UUID,
        name: str,
        kind: str = "management",
        allowed_models: list[str] | None = None,
        sovereignty_mode: bool = False,
        expires_at: datetime | None = None,
        ip_allowlist: list[str] | None = None,
        rpm_limit: int | None = None,
        now: datetime | None = None,
    ) -> tuple[ApiKey, str]:
        """Issue a key; returns it as saved and the plaintext token, which is never stored."""
        tenant = tenant_for(self.store, principal, tenant_id)
        tenant.check_active()
        key, token = ApiKey.issue(
            tenant_id=tenant.id,
            name=name,
            kind=kind,
            now=now or self.clock.now(),
            actor=principal.actor,
            allowed_models=allowed_models,
            sovereignty_mode=sovereignty_mode,
            expires_at=expires_at,
            ip_allowlist=ip_allowlist,
            rpm_limit=rpm_limit,
            user_id=principal.user_id,  # a user's key: a personal access token (seed 000)
        )
        name_key = key_name_key(tenant.id, check_key_name(name))
        index = claim_name(self.store, "key", name_key, key.id, principal.actor)
        commit_claim(
            self.store,
            key,
            index,
            f"a key named {name!r} already exists in this tenant",
            shown_once=token,
        )
        return key, token

    def get_key_for(self, principal: Principal, key_id: UUID) -> ApiKey:
        """A live key of the caller's tenant; a deleted key is gone, as GET /keys/{id} says."""
        return self.store.load_owned(principal, ApiKey, key_id, "key")

    def key_named(self, principal: Principal, tenant_id: UUID, name: str) -> UUID:
        """The id of the tenant's live key of that name (case-insensitive), from the names'
        index; none is "not found"."""
        tenant = tenant_for(self.store, principal, tenant_id)
        index_id = NameIndex.create_id("key", key_name_key(tenant.id, check_key_name(name)))
        index = self.store.find(NameIndex, index_id)
        if index is None or index.owner_id is None:
            raise NotFoundError("key", name)
        return index.owner_id

    def set_key_disabled(self, principal: Principal, key_id: UUID, disabled: bool) -> None:
        key = self.get_key_for(principal, key_id)
        if disabled and key.id == principal.key_id:
            raise SelfDeletionError("a key can't disable itself")
        key.set_disabled(disabled, actor=principal.actor)
        self.store.commit(key)

    def change_key(
        self,
        principal: Principal,
        key_id: UUID,
        changes: dict[str, Any],
        now: datetime | None = None,
    ) -> None:
        """Change a key's name or restrictions (``domain.apikey.EDITABLE``); a rename moves the
        name's claim in the same write. Every process sees the change at the key's next request:
        authentication reuses a key kept in memory only while its stored version is unchanged."""
        key = self.get_key_for(principal, key_id)
        changed: list[Aggregate] = [key]
        name = changes.get("name")
        old_key = key_name_key(key.tenant_id, key.name)
        if isinstance(name, str) and key_name_key(key.tenant_id, check_key_name(name)) != old_key:
            old = self.store.load(NameIndex, NameIndex.create_id("key", old_key), "key name")
            old.release(key.id, actor=principal.actor)
            new_key = key_name_key(key.tenant_id, name)
            changed += [old, claim_name(self.store, "key", new_key, key.id, principal.actor)]
        key.change(principal.actor, now or self.clock.now(), **changes)
        try:
            self.store.commit(*changed)
        except ConcurrentModificationError:
            if len(changed) == 1:
                raise
            # Two requests raced for the new name: the index aggregate let exactly one win.
            raise NameTakenError(f"a key named {name!r} already exists in this tenant") from None

    def delete_key(self, principal: Principal, key_id: UUID) -> None:
        """Revoke a key for good, free its name and delete its budgets, in one write."""
        key = self.get_key_for(principal, key_id)
        if key.id == principal.key_id:
            raise SelfDeletionError("a key can't delete itself")
        self.store.commit(*self.revoking(key, principal.actor))

    def revoking(self, key: ApiKey, actor: Actor) -> list[Aggregate]:
        """Revoke a key for good, free its name and delete its budgets: what to save."""
        key.delete(actor=actor)
        index_id = NameIndex.create_id("key", key_name_key(key.tenant_id, key.name))
        index = self.store.load(NameIndex, index_id, "key name")
        index.release(key.id, actor=actor)
        budgets = [self.store.load(Budget, b, "budget") for b in list(key.budget_ids)]
        for budget in budgets:
            if not budget.deleted:
                budget.delete(actor=actor)
        return [key, index, *budgets]

    def revoking_tokens_of(self, tenant_id: UUID, user_id: UUID, actor: Actor) -> list[Aggregate]:
        """Revoke every key the user issued (its personal access tokens): what to save."""
        if self.directory is None:
            return []
        revoked: list[Aggregate] = []
        for key_id in self.directory.owned_ids(tenant_id).get("key", []):
            key = self.store.find(ApiKey, key_id)
            if key is not None and key.user_id == user_id and not key.deleted:
                revoked += self.revoking(key, actor)
        return revoked
