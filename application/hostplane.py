"""The assembled application: every use case on one event store."""

from __future__ import annotations

from application.budgets import BudgetCommands


class Hostplane(BudgetCommands):
    """hostplane's write side."""

    name = "Hostplane"
