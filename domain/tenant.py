"""The Tenant aggregate: a customer of the platform and its scheduling settings."""

from __future__ import annotations

import re
from decimal import Decimal

from eventsourcing.domain import Aggregate, event

from domain.base import Actor, ConflictError, InvalidValueError, check_amount
from domain.values import MAX_TOKENS_PER_MINUTE, BoundedInt, Text

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}\Z")
NAME = Text(
    63, pattern=NAME_RE, message="{field} must be 1-63 characters: letters, digits, '.', '_' or '-'"
)
GROUP = Text(63, pattern=NAME_RE, message="{field} must be 1-63 characters: letters, digits, . _ -")
WEIGHT = BoundedInt(1, 10_000)  # integer column
QUOTA = BoundedInt(0, MAX_TOKENS_PER_MINUTE, "{field} must be >= 0 and at most {maximum}")


class TenantOffboardedError(ConflictError):
    """An offboarded tenant accepts no new keys, instances or budgets."""


def check_name(name: str) -> str:
    return NAME.check("name", name)


def check_weight(weight: int) -> int:
    return WEIGHT.check("weight", weight)


def check_quota(tokens_per_minute: int | None) -> int | None:
    if tokens_per_minute is None:
        return None
    return QUOTA.check("tokens_per_minute", tokens_per_minute)


def check_flag(field: str, value: object) -> bool:
    if type(value) is not bool:  # 1 and "true" are not a setting
        raise InvalidValueError(field, f"{field} must be true or false")
    return value


def check_group(group: str | None) -> str | None:
    return None if group is None else GROUP.check("group", group)


class Tenant(Aggregate):
    """A customer of the platform: name, fair-share weight, TPM quota and group."""

    @event("Registered")
    def __init__(
        self,
        name: str,
        weight: int,
        tokens_per_minute: int | None,
        group: str | None,
        wrapped_data_key: bytes,
        actor: Actor,
    ) -> None:
        self.name = name
        self.weight = weight
        self.tokens_per_minute = tokens_per_minute
        self.group = group
        # The tenant's data key, wrapped by the master key; forgetting it shreds its secrets.
        self.wrapped_data_key = wrapped_data_key
        self.offboarded = False
        self.credits = Decimal(0)
        # Whether the gateway deploys a serveable model nothing serves (set by its own event:
        # tenants registered before it existed have it off).
        self.on_demand_boot = False

    @classmethod
    def register(
        cls,
        name: str,
        weight: int,
        tokens_per_minute: int | None,
        group: str | None,
        wrapped_data_key: bytes,
        actor: Actor,
    ) -> Tenant:
        return cls(
            name=check_name(name),
            weight=check_weight(weight),
            tokens_per_minute=check_quota(tokens_per_minute),
            group=check_group(group),
            wrapped_data_key=wrapped_data_key,
            actor=actor,
        )

    def check_active(self) -> None:
        if self.offboarded:
            raise TenantOffboardedError(f"tenant {self.name!r} is offboarded")

    def change_weight(self, weight: int, actor: Actor) -> None:
        self.check_active()
        self._weight_changed(weight=check_weight(weight), actor=actor)

    @event("WeightChanged")
    def _weight_changed(self, weight: int, actor: Actor) -> None:
        self.weight = weight

    def change_quota(self, tokens_per_minute: int | None, actor: Actor) -> None:
        self.check_active()
        self._quota_changed(tokens_per_minute=check_quota(tokens_per_minute), actor=actor)

    @event("QuotaChanged")
    def _quota_changed(self, tokens_per_minute: int | None, actor: Actor) -> None:
        self.tokens_per_minute = tokens_per_minute

    def assign_group(self, group: str | None, actor: Actor) -> None:
        self.check_active()
        self._group_assigned(group=check_group(group), actor=actor)

    @event("GroupAssigned")
    def _group_assigned(self, group: str | None, actor: Actor) -> None:
        self.group = group

    def set_on_demand_boot(self, enabled: bool, actor: Actor) -> None:
        """Whether the gateway starts a deploy of a serveable model that nothing serves."""
        self.check_active()
        self._on_demand_boot_set(enabled=check_flag("on_demand_boot", enabled), actor=actor)

    @event("OnDemandBootSet")
    def _on_demand_boot_set(self, enabled: bool, actor: Actor) -> None:
        self.on_demand_boot = enabled

    def add_credits(self, amount_eur: Decimal, actor: Actor) -> None:
        """Prepaid credit; the balance is credits minus spend."""
        check_amount("amount_eur", amount_eur)
        self._credits_added(amount_eur=amount_eur, actor=actor)

    @event("CreditsAdded")
    def _credits_added(self, amount_eur: Decimal, actor: Actor) -> None:
        self.credits += amount_eur

    def offboard(self, actor: Actor) -> None:
        self.check_active()
        self._offboarded(actor=actor)

    @event("Offboarded")
    def _offboarded(self, actor: Actor) -> None:
        self.offboarded = True
