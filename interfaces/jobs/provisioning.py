"""The provisioning rounds: every instance on its way up (or running) moves one step."""

from __future__ import annotations

from application.provisioning import Provisioning
from interfaces.db.readgate import ReadGate
from projections.readmodels import instances


class ProvisioningRounds:
    """Finds the instances in given statuses (instances read model) and advances each."""

    def __init__(self, provisioning: Provisioning, gate: ReadGate) -> None:
        self.provisioning = provisioning
        self.gate = gate

    def run(self, statuses: tuple[str, ...] = ("pending", "deploying")) -> int:
        """One provisioning step for every GPU instance in ``statuses``; returns how many."""
        with self.gate.reading("instances") as curs:
            ids = instances.ids_in_status(curs, statuses)
        for instance_id in ids:
            self.provisioning.advance_quietly(instance_id)
        return len(ids)
