"""Budget evaluation in the background: of the tenants whose usage was recorded, and of all."""

from __future__ import annotations

import threading
from uuid import UUID

from application.budgets import Budgets
from interfaces.db.readgate import ReadGate
from projections.readmodels import budgets


class BudgetWatcher:
    """Implements the ``BudgetWatch`` port: remembers the tenants whose usage changed, for the
    scheduled job that evaluates their budgets (``evaluate_watched``, every few seconds).

    Each process evaluates the budgets of the usage it recorded itself (every API process of
    ``serve --workers``, on every node).
    """

    def __init__(self, budgets: Budgets, gate: ReadGate) -> None:
        self.budgets = budgets
        self.gate = gate
        self._watched: set[UUID] = set()
        self._lock = threading.Lock()

    def watch(self, tenant_ids: set[UUID]) -> None:
        """Note the tenants whose usage changed; their budgets are evaluated soon."""
        with self._lock:
            self._watched.update(tenant_ids)

    def watch_all(self) -> None:
        """Note every tenant with a budget (GPU time accrues without usage events)."""
        with self.gate.reading("budgets") as curs:
            tenant_ids = budgets.tenants_with_budgets(curs)
        self.watch(set(tenant_ids))

    def evaluate_watched(self) -> int:
        """Evaluate the budgets of the tenants noted since the last time; returns how many
        thresholds and limits were recorded."""
        with self._lock:
            tenant_ids, self._watched = self._watched, set()
        return sum(self.budgets.evaluate_budgets(t) for t in tenant_ids)
