"""The state admission control reads (issue 19): capacity, fair-share groups, a model's cache
settings and a key's rpm_limit, each checked before it becomes an event and replayed as stored."""

from __future__ import annotations

from decimal import Decimal

import pytest

from domain.base import InvalidValueError
from domain.capacity import Capacity
from domain.fairshare import FairshareGroup
from domain.pricing import DEFAULT_CACHE_TTL_SECONDS, Model, ModelDeletedError
from tests.unit.support import an_actor, random_name, replay, through_store
from tests.unit.test_apikey import a_key


def a_model() -> Model:
    return Model.register(
        random_name("m"), "M", "chat", 8192, Decimal(1), Decimal(2), True, an_actor()
    )


def test_the_capacity_is_one_aggregate_with_a_fixed_id():
    capacity = Capacity.configure(8, an_actor())

    assert capacity.id == Capacity.create_id() == Capacity.configure(9, an_actor()).id
    assert capacity.max_in_flight == 8


def test_a_changed_capacity_replays_to_its_last_value_and_an_unchanged_one_records_nothing():
    capacity = Capacity.configure(8, an_actor())
    capacity.change(8, an_actor())
    capacity.change(32, an_actor())

    events = through_store(capacity.collect_events())
    assert [type(e).__name__ for e in events] == ["Configured", "MaxInFlightChanged"]
    assert replay(events).max_in_flight == 32


@pytest.mark.parametrize("value", [0, -3, 1_000_001, True, "4", 2.0])
def test_a_capacity_that_is_no_positive_whole_number_is_refused_naming_the_field(value):
    with pytest.raises(InvalidValueError) as refused:
        Capacity.configure(value, an_actor())  # type: ignore[arg-type]
    assert refused.value.field == "max_in_flight"
    with pytest.raises(InvalidValueError):
        Capacity.configure(4, an_actor()).change(value, an_actor())  # type: ignore[arg-type]


def test_a_groups_id_derives_from_its_name_exactly():
    group = FairshareGroup.create("gold", 3, an_actor())

    assert group.id == FairshareGroup.create_id("gold") != FairshareGroup.create_id("Gold")
    group.change_weight(7, an_actor())
    assert replay(through_store(group.collect_events())).weight == 7


@pytest.mark.parametrize(
    ("name", "weight", "field"),
    [("bad name", 1, "name"), ("", 1, "name"), ("\x00", 1, "name"), ("ok", 0, "weight")],
)
def test_a_malformed_group_is_refused_naming_the_field(name, weight, field):
    with pytest.raises(InvalidValueError) as refused:
        FairshareGroup.create(name, weight, an_actor())
    assert refused.value.field == field


def test_a_models_cache_is_off_with_the_default_ttl_until_configured():
    model = a_model()

    assert (model.cache_enabled, model.cache_ttl_seconds) == (False, DEFAULT_CACHE_TTL_SECONDS)


def test_configuring_the_cache_records_what_changed_and_replays_it():
    model = a_model()
    model.configure_cache(True, 60, an_actor())
    model.configure_cache(True, None, an_actor())  # nothing changes: nothing recorded
    model.configure_cache(False, None, an_actor())  # the TTL is kept

    events = through_store(model.collect_events())
    assert [type(e).__name__ for e in events] == [
        "Registered",
        "CacheConfigured",
        "CacheConfigured",
    ]
    replayed = replay(events)
    assert (replayed.cache_enabled, replayed.cache_ttl_seconds) == (False, 60)


@pytest.mark.parametrize(
    ("enabled", "ttl", "field"),
    [("yes", 5, "enabled"), (True, 0, "ttl_seconds"), (True, 2_592_001, "ttl_seconds")],
)
def test_a_malformed_cache_setting_is_refused_naming_the_field(enabled, ttl, field):
    with pytest.raises(InvalidValueError) as refused:
        a_model().configure_cache(enabled, ttl, an_actor())
    assert refused.value.field == field


def test_a_deleted_models_cache_cannot_be_configured():
    model = a_model()
    model.delete(an_actor())

    with pytest.raises(ModelDeletedError):
        model.configure_cache(True, 5, an_actor())


def test_a_keys_rpm_limit_is_recorded_at_issue_and_replayed():
    key, _ = a_key(rpm_limit=600)

    assert replay(through_store(key.collect_events())).rpm_limit == 600
    assert a_key()[0].rpm_limit is None


@pytest.mark.parametrize("rpm_limit", [0, -1, 10**9 + 1, True, "60"])
def test_an_rpm_limit_that_is_no_positive_whole_number_is_refused(rpm_limit):
    with pytest.raises(InvalidValueError) as refused:
        a_key(rpm_limit=rpm_limit)
    assert refused.value.field == "rpm_limit"
