"""The Budget aggregate: a spending limit in EUR for a tenant or one of its keys."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.base import Actor, ConflictError, InvalidValueError, check_amount

PERIODS = ("daily", "weekly", "monthly", "total")
MAX_LIMIT = Decimal("1000000000")
MAX_THRESHOLDS = 20


class BudgetDeletedError(ConflictError):
    """A deleted budget can't be changed."""


def check_limit(limit_eur: Decimal) -> Decimal:
    return check_amount("limit_eur", limit_eur, maximum=MAX_LIMIT)


def check_period(period: str) -> str:
    if period not in PERIODS:
        raise InvalidValueError("period", f"period must be one of {', '.join(PERIODS)}")
    return period


def check_thresholds(thresholds: list[Decimal]) -> list[Decimal]:
    if not isinstance(thresholds, list) or len(thresholds) > MAX_THRESHOLDS:
        raise InvalidValueError("thresholds", f"thresholds is a list of at most {MAX_THRESHOLDS}")
    if any(
        type(t) is not Decimal
        or not t.is_finite()
        or t <= 0
        or t > 1
        or not -6 <= int(t.as_tuple().exponent) <= 0  # what numeric[] holds exactly
        for t in thresholds
    ):
        raise InvalidValueError(
            "thresholds",
            "thresholds are fractions in (0, 1] with at most 6 decimals, e.g. 0.5, 0.8, 1",
        )
    if len(set(thresholds)) != len(thresholds):
        raise InvalidValueError("thresholds", "thresholds must not repeat")
    return sorted(thresholds)


class Budget(Aggregate):
    """A spending limit per period, with alert thresholds, for a tenant or a key."""

    @event("Set")
    def __init__(
        self,
        tenant_id: UUID,
        key_id: UUID | None,
        limit_eur: Decimal,
        period: str,
        thresholds: list[Decimal],
        actor: Actor,
    ) -> None:
        self.tenant_id = tenant_id
        self.key_id = key_id
        self.limit_eur = limit_eur
        self.period = period
        self.thresholds = thresholds
        self.deleted = False
        # Alerts already recorded, per period start: thresholds as strings, and "limit".
        self.alerts: dict[str, list[str]] = {}

    @classmethod
    def set(
        cls,
        tenant_id: UUID,
        key_id: UUID | None,
        limit_eur: Decimal,
        period: str,
        thresholds: list[Decimal],
        actor: Actor,
    ) -> Budget:
        return cls(
            tenant_id=tenant_id,
            key_id=key_id,
            limit_eur=check_limit(limit_eur),
            period=check_period(period),
            thresholds=check_thresholds(thresholds),
            actor=actor,
        )

    @property
    def scope(self) -> str:
        return "key" if self.key_id is not None else "tenant"

    def check_not_deleted(self) -> None:
        if self.deleted:
            raise BudgetDeletedError("this budget has been deleted")

    def change(
        self, limit_eur: Decimal, period: str, thresholds: list[Decimal], actor: Actor
    ) -> None:
        self.check_not_deleted()
        self._changed(
            limit_eur=check_limit(limit_eur),
            period=check_period(period),
            thresholds=check_thresholds(thresholds),
            actor=actor,
        )

    @event("Changed")
    def _changed(
        self, limit_eur: Decimal, period: str, thresholds: list[Decimal], actor: Actor
    ) -> None:
        self.limit_eur = limit_eur
        self.period = period
        self.thresholds = thresholds

    def evaluate(self, period_start: datetime, spent: Decimal, actor: Actor) -> None:
        """Record each threshold, and the limit, that ``spent`` has reached in this period.

        Each is recorded once per period: evaluating again changes nothing.
        """
        if self.deleted:
            return
        seen = self.alerts.get(period_start.isoformat(), [])
        for threshold in self.thresholds:
            if threshold < 1 and str(threshold) not in seen and spent >= self.limit_eur * threshold:
                self._threshold_crossed(
                    period_start=period_start, threshold=threshold, spent=spent, actor=actor
                )
        if "limit" not in seen and spent >= self.limit_eur:
            self._exceeded(period_start=period_start, spent=spent, actor=actor)

    @event("ThresholdCrossed")
    def _threshold_crossed(
        self, period_start: datetime, threshold: Decimal, spent: Decimal, actor: Actor
    ) -> None:
        self.alerts.setdefault(period_start.isoformat(), []).append(str(threshold))

    @event("Exceeded")
    def _exceeded(self, period_start: datetime, spent: Decimal, actor: Actor) -> None:
        self.alerts.setdefault(period_start.isoformat(), []).append("limit")

    def delete(self, actor: Actor) -> None:
        self.check_not_deleted()
        self._deleted(actor=actor)

    @event("Deleted")
    def _deleted(self, actor: Actor) -> None:
        self.deleted = True


def budget_state(limit_eur: Decimal, thresholds: list[Decimal], spent: Decimal) -> str:
    """``exceeded`` at the limit, ``warning`` past any alert threshold below it, else ``ok``."""
    if spent >= limit_eur:
        return "exceeded"
    if any(t < 1 and spent >= limit_eur * t for t in thresholds):
        return "warning"
    return "ok"
