"""The Budget aggregate: limit, period and threshold rules, deletion, events and replay."""

from __future__ import annotations

from decimal import Decimal
from uuid import uuid4

import pytest

from domain.base import Actor, InvalidValueError
from domain.budget import MAX_LIMIT, PERIODS, Budget, BudgetDeletedError
from tests.unit.support import an_actor, replay, through_store

D = Decimal


def a_budget(actor: Actor | None = None, **overrides: object) -> Budget:
    values: dict[str, object] = {
        "tenant_id": uuid4(),
        "key_id": None,
        "limit_eur": D("100.00"),
        "period": "monthly",
        "thresholds": [D("0.5"), D("0.8"), D("1")],
        "actor": actor or an_actor(),
    }
    values.update(overrides)
    return Budget.set(**values)  # type: ignore[arg-type]


def test_a_budget_keeps_its_limit_period_and_thresholds():
    budget = a_budget(limit_eur=D("12.345678"), period="daily", thresholds=[D("0.9")])

    assert budget.limit_eur == D("12.345678")
    assert budget.period == "daily"
    assert budget.thresholds == [D("0.9")]
    assert budget.deleted is False


def test_a_budget_without_a_key_is_scoped_to_the_tenant():
    assert a_budget(key_id=None).scope == "tenant"


def test_a_budget_with_a_key_is_scoped_to_the_key():
    key_id = uuid4()
    budget = a_budget(key_id=key_id)

    assert budget.scope == "key"
    assert budget.key_id == key_id


@pytest.mark.parametrize("limit", [D("0.000001"), D("1"), D("1E+3"), D("99.99"), MAX_LIMIT])
def test_a_positive_finite_limit_with_at_most_6_decimals_is_accepted(limit):
    assert a_budget(limit_eur=limit).limit_eur == limit


@pytest.mark.parametrize(
    "limit",
    [D("0"), D("-0"), D("-1"), D("-0.01"), D("Infinity"), D("-Infinity"), D("NaN"), D("sNaN")],
)
def test_a_limit_that_is_not_positive_and_finite_is_refused_naming_the_limit_field(limit):
    with pytest.raises(InvalidValueError) as refused:
        a_budget(limit_eur=limit)

    assert refused.value.field == "limit_eur"


def test_a_limit_above_the_maximum_is_refused():
    with pytest.raises(InvalidValueError) as refused:
        a_budget(limit_eur=MAX_LIMIT + D("0.000001"))

    assert refused.value.field == "limit_eur"


@pytest.mark.parametrize("limit", [D("0.0000001"), D("1.1234567")])
def test_a_limit_with_more_than_6_decimals_is_refused(limit):
    with pytest.raises(InvalidValueError, match="6 decimal") as refused:
        a_budget(limit_eur=limit)

    assert refused.value.field == "limit_eur"


@pytest.mark.parametrize("period", PERIODS)
def test_each_known_period_is_accepted(period):
    assert a_budget(period=period).period == period


@pytest.mark.parametrize("period", ["", "yearly", "Monthly", "hourly"])
def test_an_unknown_period_is_refused_naming_the_period_field(period):
    with pytest.raises(InvalidValueError) as refused:
        a_budget(period=period)

    assert refused.value.field == "period"


@pytest.mark.parametrize(
    "thresholds",
    [[], [D("1")], [D("0.000001")], [D("0.25"), D("0.5"), D("0.75"), D("1.0")]],
)
def test_thresholds_in_zero_to_one_are_accepted(thresholds):
    assert a_budget(thresholds=thresholds).thresholds == thresholds


@pytest.mark.parametrize("bad", [D("0"), D("-0.5"), D("1.000001"), D("2"), D("NaN"), D("Infinity")])
def test_a_threshold_outside_zero_to_one_is_refused_naming_the_thresholds_field(bad):
    with pytest.raises(InvalidValueError) as refused:
        a_budget(thresholds=[D("0.5"), bad])

    assert refused.value.field == "thresholds"


@pytest.mark.parametrize(
    "thresholds", [[D("0.5"), D("0.5")], [D("0.5"), D("0.50")], [D("1"), D("0.8"), D("1.0")]]
)
def test_repeated_thresholds_are_refused(thresholds):
    with pytest.raises(InvalidValueError, match="repeat") as refused:
        a_budget(thresholds=thresholds)

    assert refused.value.field == "thresholds"


def test_thresholds_are_stored_sorted():
    budget = a_budget(thresholds=[D("1"), D("0.5"), D("0.8")])
    (created,) = budget.collect_events()

    assert budget.thresholds == [D("0.5"), D("0.8"), D("1")]
    assert created.thresholds == [D("0.5"), D("0.8"), D("1")]


def test_changing_a_budget_replaces_limit_period_and_thresholds():
    budget = a_budget()

    budget.change(D("250"), "weekly", [D("0.9"), D("0.1")], actor=an_actor())

    assert (budget.limit_eur, budget.period, budget.thresholds) == (
        D("250"),
        "weekly",
        [D("0.1"), D("0.9")],
    )


@pytest.mark.parametrize(
    ("limit", "period", "thresholds", "field"),
    [
        (D("0"), "daily", [], "limit_eur"),
        (D("1"), "fortnightly", [], "period"),
        (D("1"), "daily", [D("3")], "thresholds"),
    ],
)
def test_an_invalid_change_is_refused_and_leaves_the_budget_as_it_was(
    limit, period, thresholds, field
):
    budget = a_budget()
    before = (budget.limit_eur, budget.period, list(budget.thresholds))
    budget.collect_events()

    with pytest.raises(InvalidValueError) as refused:
        budget.change(limit, period, thresholds, actor=an_actor())

    assert refused.value.field == field
    assert (budget.limit_eur, budget.period, budget.thresholds) == before
    assert budget.collect_events() == []


def test_a_deleted_budget_is_marked_deleted():
    budget = a_budget()

    budget.delete(actor=an_actor())

    assert budget.deleted is True


def test_a_deleted_budget_refuses_a_change():
    budget = a_budget()
    budget.delete(actor=an_actor())

    with pytest.raises(BudgetDeletedError):
        budget.change(D("1"), "daily", [], actor=an_actor())


def test_a_deleted_budget_cant_be_deleted_again():
    budget = a_budget()
    budget.delete(actor=an_actor())

    with pytest.raises(BudgetDeletedError):
        budget.delete(actor=an_actor())


def test_every_budget_event_carries_the_actor_it_was_given():
    actors = [an_actor(ip=f"198.51.100.{i}") for i in range(3)]
    budget = a_budget(actor=actors[0])
    budget.change(D("5"), "total", [], actor=actors[1])
    budget.delete(actor=actors[2])

    assert [e.actor for e in budget.collect_events()] == actors


def test_a_budget_replayed_from_its_events_equals_the_original():
    budget = a_budget(key_id=uuid4())
    budget.change(D("0.000001"), "daily", [D("1")], actor=an_actor())
    budget.delete(actor=an_actor())

    assert replay(budget.collect_events()) == budget


def test_a_budget_replayed_from_stored_events_keeps_its_decimals_exactly():
    budget = a_budget(limit_eur=D("1E+3"), thresholds=[D("0.50"), D("1.0")])
    budget.change(D("12.340000"), "weekly", [D("0.800")], actor=an_actor())

    replayed = replay(through_store(budget.collect_events()))

    assert replayed == budget
    assert str(replayed.limit_eur) == "12.340000"
    assert [str(t) for t in replayed.thresholds] == ["0.800"]
