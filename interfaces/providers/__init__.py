"""GPU provider drivers (adapters of ``application.ports.Provider``)."""

from __future__ import annotations

from application.ports import Provider


class ProviderRegistry:
    """Implements ``Providers``: drivers by name, and a default for every other name.

    With no real driver configured, the simulated provider stands in for every provider name
    (seed 000 deploys with ``"provider": "vastai"``), so the whole lifecycle runs on one machine.
    """

    def __init__(self, default: Provider, named: dict[str, Provider] | None = None) -> None:
        self.default = default
        self.named = dict(named or {})

    def provider_for(self, name: str) -> Provider:
        return self.named.get(name, self.default)
