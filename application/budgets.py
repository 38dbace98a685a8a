"""Use cases on budgets."""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID

from application.auth import Principal
from application.errors import NotFoundError
from application.provisioning import ProvisioningCommands
from domain.apikey import ApiKey
from domain.budget import Budget


class BudgetCommands(ProvisioningCommands):
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
            key = self.get_key_for(principal, key_id)
            if key.tenant_id != tenant_id or key.deleted:  # a deleted key reads as 404 too
                raise NotFoundError("key", key_id)
            tenant_id = key.tenant_id
        tenant = self.get_tenant_for(principal, tenant_id)
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
            self.commit(budget)
        else:
            key.attach_budget(budget.id, actor=principal.actor)
            self.commit(budget, key)
        return budget.id

    def get_budget_for(self, principal: Principal, budget_id: UUID) -> Budget:
        return self.load_owned(principal, Budget, budget_id, "budget")

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
        self.commit(budget)

    def delete_budget(self, principal: Principal, budget_id: UUID) -> None:
        budget = self.get_budget_for(principal, budget_id)
        budget.delete(actor=principal.actor)
        if budget.key_id is None:
            self.commit(budget)
            return
        key = self.find(ApiKey, budget.key_id)
        if key is not None:
            key.detach_budget(budget.id, actor=principal.actor)
        self.commit(budget, key)
