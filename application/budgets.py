"""Use cases on budgets, and their evaluation against what was spent."""

from __future__ import annotations

import contextlib
from datetime import datetime
from decimal import Decimal
from uuid import UUID

from application.auth import Principal
from application.errors import ConcurrentModificationError, NotFoundError
from application.ports import Clock, SpendReader, TenantDirectory
from application.store import EventStore
from application.tenants import tenant_for
from domain.apikey import ApiKey
from domain.base import Actor
from domain.budget import Budget
from domain.timewindow import period_window


class Budgets:
    """``directory`` finds a tenant's budgets, ``spend`` what it spent, to evaluate them."""

    def __init__(
        self,
        store: EventStore,
        clock: Clock,
        directory: TenantDirectory,
        spend: SpendReader,
    ) -> None:
        self.store = store
        self.clock = clock
        self.directory = directory
        self.spend = spend

    def set_budget(
        self,
        principal: Principal,
        tenant_id: UUID | None,
        key_id: UUID | None,
        limit_eur: Decimal,
        period: str,
        thresholds: list[Decimal],
    ) -> UUID:
        """A budget for a whole tenant, or (with ``key_id``) for one of its keys."""
        tenant_id = principal.owning_tenant(tenant_id)
        if key_id is not None:
            key = self.store.load_owned(principal, ApiKey, key_id, "key")
            if key.tenant_id != tenant_id or key.deleted:  # a deleted key reads as 404 too
                raise NotFoundError("key", key_id)
            tenant_id = key.tenant_id
        tenant = tenant_for(self.store, principal, tenant_id)
        tenant.check_active()
        budget = Budget.set(
            tenant_id=tenant.id,
            key_id=key_id,
            limit_eur=limit_eur,
            period=period,
            thresholds=thresholds,
            actor=principal.actor,
        )
        if key_id is None:
            self.store.commit(budget)
        else:
            key.attach_budget(budget.id, actor=principal.actor)
            self.store.commit(budget, key)
        return budget.id

    def get_budget_for(self, principal: Principal, budget_id: UUID) -> Budget:
        return self.store.load_owned(principal, Budget, budget_id, "budget")

    def change_budget(
        self,
        principal: Principal,
        budget_id: UUID,
        limit_eur: Decimal,
        period: str,
        thresholds: list[Decimal],
    ) -> None:
        budget = self.get_budget_for(principal, budget_id)
        budget.change(limit_eur, period, thresholds, actor=principal.actor)
        self.store.commit(budget)

    def delete_budget(self, principal: Principal, budget_id: UUID) -> None:
        budget = self.get_budget_for(principal, budget_id)
        budget.delete(actor=principal.actor)
        if budget.key_id is None:
            self.store.commit(budget)
            return
        key = self.store.find(ApiKey, budget.key_id)
        if key is not None:
            key.detach_budget(budget.id, actor=principal.actor)
        self.store.commit(budget, key)

    def evaluate_budgets(self, tenant_id: UUID, now: datetime | None = None) -> int:
        """Record the thresholds and limits the tenant's budgets have reached; returns how many."""
        now = now or self.clock.now()
        changed = []
        for budget_id in self.directory.owned_ids(tenant_id)["budget"]:
            budget = self.store.find(Budget, budget_id)  # type: ignore[arg-type]
            if budget is None or budget.deleted:
                continue
            start, end = period_window(budget.period, now)
            spent = self.spend.spent(budget.tenant_id, budget.key_id, start, end)
            budget.evaluate(start, spent, actor=Actor.system())
            if budget.pending_events:
                changed.append(budget)
        recorded = sum(len(b.pending_events) for b in changed)
        for budget in changed:
            # A concurrent evaluation may have recorded it first: exactly once holds either way.
            with contextlib.suppress(ConcurrentModificationError):
                self.store.commit(budget)
        return recorded
